"""The ``main`` of a scenario script: run the study, list what it wrote, report bad input.

Scripts in ``scripts/`` are thin: parse their arguments, call study points, print a
table. :func:`run_study` gives each the same behaviour on the terminal - one line
``NAME: error: ...`` and exit status 2 for bad input, no traceback; ``NAME: interrupted``
and exit status 130 on Ctrl-C - and lists the files written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from des.errors import DesError

#: Exit statuses of a study: bad input, and stopped by Ctrl-C (128 + SIGINT).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def run_study(name: str, study: Callable[[], list[Path]]) -> int:
    """Run ``study`` as a script's ``main``; return the exit status.

    Parameters
    ----------
    name : str
        The script's name, which starts its error line.
    study : callable
        Does the work (printing its tables) and returns the files it wrote.

    Returns
    -------
    int
        0; 2 after one line ``NAME: error: ...`` on stderr for a
        :class:`~des.errors.DesError`; 130 after ``NAME: interrupted`` on Ctrl-C.
    """
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        written = study()
    except DesError as exc:
        sys.stderr.write(f"{name}: error: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{name}: interrupted\n")
        return EXIT_INTERRUPTED
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return 0
