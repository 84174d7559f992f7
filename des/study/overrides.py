"""Set fields of a parsed YAML mapping by dotted path, as sweep axes do.

``apply_overrides(data, [("device.compute_units", 54)], where)`` returns a deep copy of
``data`` with that one field changed; the spec readers then check the result as they
check any file, so a value with a unit (``"1.5 TB/s"``) is read as in YAML and a value
of the wrong type is reported by the reader of that field. A path segment that is a
whole number indexes a list (``topology.nodes.0.device``). A value met on the way that
is not a mapping (a system's ``device: a100``) may be expanded into one by the
``expand`` callback (the preset's fields), so ``device.compute_units`` works whether
the system names a device or inlines one.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable
from typing import Any

from des.errors import DesError

#: ``expand(keys, value)``: a mapping to descend into in place of ``value`` found at
#: ``keys`` (the path so far), or ``value`` unchanged.
Expander = Callable[[tuple[str, ...], Any], Any]


def split_path(path: str) -> tuple[str, ...]:
    """The segments of a dotted path; an empty segment is an error."""
    if not isinstance(path, str) or not path:
        raise DesError(f"a field path must be a non-empty string, got {path!r}")
    keys = tuple(path.split("."))
    if any(not key for key in keys):
        raise DesError(f"field path '{path}' has an empty segment")
    return keys


def _missing(keys: tuple[str, ...], depth: int, known: Iterable[object], where: str) -> DesError:
    known = [str(k) for k in known]
    bad = keys[depth]
    close = difflib.get_close_matches(bad, known, n=1)
    hint = f" (did you mean '{'.'.join((*keys[:depth], close[0]))}'?)" if close else ""
    at = ".".join(keys[:depth]) or "the top level"
    return DesError(
        f"{where}: no field '{'.'.join(keys[: depth + 1])}'{hint}; fields of {at}: {', '.join(sorted(known)) or 'none'}"
    )


def set_path(data: Any, keys: tuple[str, ...], value: Any, where: str, expand: Expander | None = None) -> None:
    """Set ``data[keys[0]][keys[1]]... = value`` in place.

    Every segment but the last must exist (a misspelt one is reported with the
    nearest name); the last may be new, since optional fields are often absent from a
    file, and the spec reader rejects a name it does not know.

    Parameters
    ----------
    data : dict or list
        The mapping to change.
    keys : tuple of str
        The path, from :func:`split_path`.
    value : object
        The new value, as YAML would give it.
    where : str
        Where ``data`` came from, for error messages.
    expand : callable, optional
        See :data:`Expander`.
    """
    node = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise DesError(
                    f"{where}: '{'.'.join(keys[: depth + 1])}': {'.'.join(keys[:depth])} is a list of "
                    f"{len(node)} entries, index with 0..{len(node) - 1}"
                )
            index: Any = int(key)
        elif isinstance(node, dict):
            index = key
            if not last and key not in node:
                raise _missing(keys, depth, node, where)
        else:
            raise DesError(
                f"{where}: '{'.'.join(keys)}': {'.'.join(keys[:depth])} is {node!r}, not a mapping of fields"
            )
        if last:
            node[index] = value
            return
        child = node[index]
        if expand is not None and not isinstance(child, (dict, list)):
            child = expand(keys[: depth + 1], child)
            node[index] = child
        node = child


def apply_overrides(
    data: Any, overrides: Iterable[tuple[str, Any]], where: str, expand: Expander | None = None
) -> Any:
    """A deep copy of ``data`` with each ``(dotted path, value)`` of ``overrides`` set.

    Raises
    ------
    DesError
        For a path through a field that does not exist (with the nearest name) or
        through a value that is not a mapping or list.
    """
    result = copy.deepcopy(data)
    if not isinstance(result, dict):
        raise DesError(f"{where}: expected a mapping of fields, got {type(result).__name__}")
    for path, value in overrides:
        set_path(result, split_path(path), copy.deepcopy(value), where, expand)
    return result
