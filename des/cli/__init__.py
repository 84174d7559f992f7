"""The ``des`` command line: one module per command, parsing and printing only.

- :mod:`des.cli.main` - the parser and the dispatch (``des = des.cli:main``);
- :mod:`des.cli.args` - argument types and options shared by the commands;
- :mod:`des.cli.run`, :mod:`des.cli.collective`, :mod:`des.cli.topology`,
  :mod:`des.cli.op`, :mod:`des.cli.validate`, :mod:`des.cli.sweep`,
  :mod:`des.cli.area` - one command each, registered by its ``add_command``.

Nothing below the command line imports it: scripts, sweeps and benchmarks call
:mod:`des.study`.
"""

from des.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
