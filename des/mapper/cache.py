"""Schedule cache: in memory and on disk, keyed by everything the answer depends on.

The key hashes every field of the :class:`~des.specs.DeviceSpec` (not just its name,
so an edited YAML file never reuses a stale schedule), the operator's key (kind, shape
and dtype), the mapper version and the :class:`~des.mapper.params.MapperParams`.

On disk each schedule is one JSON file ``<dir>/v<version>/<key[:2]>/<key>.json``,
where ``<dir>`` is ``$DES_CACHE_DIR`` or, by default, ``$XDG_CACHE_HOME/des`` (usually
``~/.cache/des``). A file is written to a temporary name in the same directory and
renamed into place with :func:`os.replace`, which is atomic, so two processes writing
the same key at once each leave a complete file and readers never see half of one. A
file that cannot be read back (truncated, edited, from a foreign tool) is logged once
as a warning and rebuilt. If the directory cannot be written, the cache carries on in
memory only, with one warning.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from des.mapper.params import MAPPER_VERSION, MapperParams
from des.mapper.schedule import TileSchedule, WaveGroup
from des.outputs import NEW_FILE_MODE, current_umask
from des.specs import DeviceSpec

log = logging.getLogger(__name__)

#: Environment variable naming the on-disk cache directory.
CACHE_ENV = "DES_CACHE_DIR"
#: Format of one cache file; a file of another format is rebuilt.
FILE_FORMAT = 1

_MEMORY: dict[str, TileSchedule] = {}
#: The same device object and operator asked again (a model asks for a few thousand
#: times): ``(id(device), operator) -> (device, schedule)``, found without the digest.
_BY_IDENTITY: dict[tuple[int, Any], tuple[DeviceSpec, TileSchedule]] = {}
_BY_IDENTITY_LIMIT = 65536
_WARNED_DIRS: set[str] = set()


def cache_dir() -> Path:
    """The on-disk cache directory: ``$DES_CACHE_DIR``, else the per-user cache dir."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "des"


def cache_key(device: DeviceSpec, operator: Any, params: MapperParams) -> str:
    """Hex digest over the device's fields, the operator key, dtype, version and params."""
    return _cache_key(device, operator.key(), operator.dtype, params)


@functools.lru_cache(maxsize=4096)
def _cache_key(device: DeviceSpec, operator_key: str, dtype: str, params: MapperParams) -> str:
    # Memoised: a whole model asks for the same few operators thousands of times, and
    # the digest (two dataclass walks, JSON, SHA-256) was a tenth of a model's run.
    # The device's and the parameters' parts are memoised apart (a serving run asks
    # for thousands of shapes on one device).
    payload = {
        "device": _json_part(device),
        "operator": operator_key,
        "dtype": dtype,
        "mapper_version": MAPPER_VERSION,
        "params": _json_part(params),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=256)
def _json_part(spec: Any) -> Any:
    """A frozen dataclass as plain data (the same object each time: treat as read-only)."""
    return spec.as_dict() if isinstance(spec, MapperParams) else dataclasses.asdict(spec)


def clear_memory_cache() -> None:
    """Forget every schedule held in memory (the disk cache is untouched)."""
    _MEMORY.clear()
    _BY_IDENTITY.clear()


def identity_get(device: DeviceSpec, operator: Any) -> TileSchedule | None:
    """The schedule found before for this very device object and an equal operator."""
    hit = _BY_IDENTITY.get((id(device), operator))
    return hit[1] if hit is not None and hit[0] is device else None


def identity_put(device: DeviceSpec, operator: Any, schedule: TileSchedule) -> None:
    """Remember ``schedule`` for this device object and operator (bounded)."""
    if len(_BY_IDENTITY) >= _BY_IDENTITY_LIMIT:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[(id(device), operator)] = (device, schedule)


def memory_get(key: str) -> TileSchedule | None:
    """The schedule held in memory for ``key``, if any."""
    return _MEMORY.get(key)


def memory_put(key: str, schedule: TileSchedule) -> None:
    """Hold ``schedule`` in memory under ``key``."""
    _MEMORY[key] = schedule


def _path(key: str) -> Path:
    return cache_dir() / f"v{MAPPER_VERSION}" / key[:2] / f"{key}.json"


def schedule_to_json(schedule: TileSchedule) -> dict[str, Any]:
    """A JSON-serialisable form of a schedule (floats round-trip exactly)."""
    return {
        "operator": schedule.operator,
        "device": schedule.device,
        "op_class": schedule.op_class,
        "groups": [[g.count, g.units, g.compute_s, g.dram_bytes] for g in schedule.groups],
        "tiles": schedule.tiles,
        "standalone_s": schedule.standalone_s,
        "mapping": schedule.mapping,
    }


def schedule_from_json(data: Any) -> TileSchedule:
    """Rebuild a schedule from :func:`schedule_to_json`; ``ValueError`` if malformed."""
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    groups = []
    for item in data["groups"]:
        count, units, compute_s, dram_bytes = item
        if not (isinstance(count, int) and isinstance(units, int)):
            raise ValueError("bad wave group")
        groups.append(WaveGroup(count, units, float(compute_s), float(dram_bytes)))
    if not groups or not isinstance(data["mapping"], dict):
        raise ValueError("no wave groups or no mapping")
    return TileSchedule(
        operator=str(data["operator"]),
        device=str(data["device"]),
        op_class=str(data["op_class"]),
        groups=tuple(groups),
        tiles=int(data["tiles"]),
        standalone_s=float(data["standalone_s"]),
        mapping=data["mapping"],
    )


def disk_get(key: str) -> TileSchedule | None:
    """The schedule stored on disk for ``key``; ``None`` if absent or unreadable.

    An unreadable file is reported with one warning and left for :func:`disk_put`
    to replace.
    """
    path = _path(key)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("schedule cache: cannot read %s (%s); searching again", path, exc)
        return None
    try:
        data = json.loads(text)
        if data.get("format") != FILE_FORMAT or data.get("key") != key:
            raise ValueError("wrong format or key")
        return schedule_from_json(data["schedule"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("schedule cache: corrupt entry %s (%s); rebuilding it", path, exc)
        return None


def disk_put(key: str, schedule: TileSchedule) -> None:
    """Store ``schedule`` on disk atomically; a directory that cannot be written warns once."""
    path = _path(key)
    payload = {"format": FILE_FORMAT, "key": key, "schedule": schedule_to_json(schedule)}
    text = json.dumps(payload, sort_keys=True)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes 0600 files; a cache shared by a user's processes is 0644.
        os.chmod(tmp_name, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        where = str(cache_dir())
        if where not in _WARNED_DIRS:
            _WARNED_DIRS.add(where)
            log.warning("schedule cache: cannot write %s (%s); caching in memory only", where, exc)
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
