"""Writing result files safely: check a path before a long run, replace a file atomically.

Two rules every writer in des follows:

- an output path is checked *before* the work starts (:func:`check_writable`): a
  folder that does not exist, a path under a file, a folder that is not writable, a
  pseudo file system such as ``/proc`` - each is a :class:`~des.errors.DesError` naming
  the path, raised while nothing has run yet;
- an existing result is never replaced by a failed write (:func:`write_bytes`,
  :func:`write_text`): the new content goes to a temporary file in the same folder,
  which is renamed over the old one only once it is complete (``os.replace`` is
  atomic). A failure is a :class:`DesError` naming the path and the reason, and the old
  file is left as it was. A target that is not a regular file (``/dev/stdout``, a
  named pipe) is written in place: renaming over it would replace the device.

Files are created with the usual permissions (``0666`` less the umask, so ``0644``
under the common umask ``022``), not the ``0600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from des.errors import DesError

#: Permissions of a new file before the umask is applied (what ``open`` uses).
NEW_FILE_MODE = 0o666


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _probe(folder: Path, lead: str) -> None:
    """Create and remove a file in ``folder``: the one test of writability that read-only
    mounts, pseudo file systems and permissions all answer truthfully."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".des.", suffix=".probe")
    except OSError as exc:
        raise DesError(f"{lead}: cannot write in folder {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def check_writable(path: str | os.PathLike[str], what: str = "") -> Path:
    """Check that ``path`` can be written, before any work; return it as a :class:`Path`.

    Parameters
    ----------
    path : path
        The file to be written.
    what : str
        How the path was given (``--trace``), to start the message.

    Raises
    ------
    DesError
        If ``path`` is a folder, lies under a file or a missing folder, or its folder
        does not take new files (tried by creating and removing a temporary file, which
        also catches read-only mounts and pseudo file systems).
    """
    path = Path(path)
    lead = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise DesError(f"{lead}: cannot write: it is a folder")
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DesError(f"{lead}: cannot write: {folder} is a file, not a folder")
            break
    if not parent.is_dir():
        raise DesError(f"{lead}: cannot write: folder {parent} does not exist")
    if path.exists() and not path.is_file():
        if not os.access(path, os.W_OK):
            raise DesError(f"{lead}: cannot write: permission denied")
        return path
    _probe(parent, lead)
    if path.exists() and not os.access(path, os.W_OK):
        raise DesError(f"{lead}: cannot write: permission denied")
    return path


def check_folder(path: str | os.PathLike[str], what: str = "") -> Path:
    """Check that files can be written in folder ``path`` (made later if it is missing).

    Raises
    ------
    DesError
        If ``path`` (or the nearest part of it that exists) is a file, or that folder
        does not take new files.
    """
    path = Path(path)
    lead = f"{what} {path}" if what else str(path)
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), Path("."))
    if not existing.is_dir():
        where = "it" if existing == path else str(existing)
        raise DesError(f"{lead}: cannot write: {where} is a file, not a folder")
    _probe(existing, lead)
    return path


def make_folder(path: str | os.PathLike[str]) -> Path:
    """Create folder ``path`` (and its parents) if missing; a failure is a :class:`DesError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DesError(f"cannot make folder {path}: {exc.strerror or exc}") from None
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path``, replacing it only once the new file is complete.

    Raises
    ------
    DesError
        Naming the path and the reason; an existing file is then left unchanged.
    """
    path = Path(path)
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            with open(path, "wb") as handle:
                handle.write(data)
            return path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise DesError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DesError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``rows`` (mappings; keys beyond ``columns`` ignored, ``None`` as an empty cell)
    as a CSV table with a header, by :func:`write_text`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    return write_text(path, buffer.getvalue())
