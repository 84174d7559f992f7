"""``python -m des.cli``: the ``des`` command."""

import sys

from des.cli.main import main

sys.exit(main())
