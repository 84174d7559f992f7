"""Where the real measurements live, and reading them.

The measurements are not part of the project (they are published by others): des
looks for them in an explicit folder, else ``$DES_CALIBRATION_DIR``, else in
``../shared/calibration`` beside the checkout the package was imported from. Never
relative to the working directory: the same command finds the same data wherever it
is run.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from des.errors import DesError

ENV_VAR = "DES_CALIBRATION_DIR"


def default_calibration_dir() -> Path:
    """``../shared/calibration`` beside the checkout holding the ``des`` package."""
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "calibration"


def calibration_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The calibration folder; :class:`DesError` naming what was tried if none exists."""
    if explicit is not None:
        candidates = [Path(explicit)]
    elif os.environ.get(ENV_VAR):
        candidates = [Path(os.environ[ENV_VAR])]
    else:
        candidates = [default_calibration_dir()]
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(path) for path in candidates)
    raise DesError(f"calibration measurements not found (tried {tried}); set {ENV_VAR} to the folder holding them")


def read_rows(path: Path, columns: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts, each checked to hold ``columns``.

    Raises :class:`DesError` if the file is missing or unreadable or a row lacks a column.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DesError(f"{path}: no such calibration file") from None
    except OSError as exc:
        raise DesError(f"{path}: cannot read: {exc}") from None
    for number, row in enumerate(rows, start=2):
        if any(not row.get(column) for column in columns):
            raise DesError(f"{path}: line {number} lacks one of the columns {', '.join(columns)}")
    return rows
