"""Where the real measurements live, and reading them.

The measurements are not part of the project (they are published by others): des
looks for them in ``$DES_CALIBRATION_DIR``, else in ``../shared/calibration`` beside the
checkout the package was imported from, else beside the working directory.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from des.errors import DesError

ENV_VAR = "DES_CALIBRATION_DIR"


def calibration_dir() -> Path:
    """The calibration folder; :class:`DesError` with what was tried if none exists."""
    tried = []
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            return path
        raise DesError(f"{ENV_VAR}={explicit}: no such directory")
    repo_root = Path(__file__).resolve().parent.parent
    for candidate in (repo_root.parent / "shared" / "calibration", Path.cwd().parent / "shared" / "calibration"):
        tried.append(str(candidate))
        if candidate.is_dir():
            return candidate
    raise DesError(
        "calibration measurements not found (tried " + ", ".join(tried) + f"); set {ENV_VAR} to the folder holding them"
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts; :class:`DesError` if it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise DesError(f"{path}: cannot read: {exc}") from None
