"""``python -m des`` runs the command line."""

import sys

from des.cli import main

sys.exit(main())
