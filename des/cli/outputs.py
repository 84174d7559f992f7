"""Writing a command's files after its result is printed, and saying what was written.

A command computes its result, prints it, and only then writes its files (trace, Gantt
chart, ...): a write that fails - a full disk, a folder that went away since it was
checked - then loses nothing already computed. Each failure is one line
``des: error: cannot write ...`` on stderr and the exit status is 2; files that could be
written still are, each listed as ``wrote PATH``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from des.errors import DesError

EXIT_BAD_INPUT = 2

#: ``(path or None, writer)``: ``writer(path)`` writes the file; ``None`` skips it.
FileJob = tuple[Path | None, Callable[[Path], Any]]


def write_outputs(files: Iterable[FileJob], stream: TextIO) -> int:
    """Write every file that has a path; list each on ``stream``; return the exit status."""
    status = 0
    for path, writer in files:
        if path is None:
            continue
        try:
            writer(path)
        except DesError as exc:
            print(f"des: error: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        except OSError as exc:
            print(f"des: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        print(f"wrote {path}", file=stream)
    return status
