"""The mapper: operator + device -> tile schedule, searched with numpy and cached.

Pure functions over numpy, no SimPy. :func:`schedule_for` is the entry point: it
returns the fastest :class:`~des.mapper.schedule.TileSchedule` the cost model finds
for an operator on a device, from the in-memory cache, the on-disk cache
(:mod:`des.mapper.cache`) or a fresh search, and says which and how long the search
took. The models live in :mod:`des.mapper.matmul` (matmul, batched matmul, GEMV),
:mod:`des.mapper.rowwise` (softmax, layernorm, GELU, add) and
:mod:`des.mapper.attention` (flash attention); their physical constants beyond the
device spec are in :mod:`des.mapper.params`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from des.errors import DesError
from des.fitted import DRAM_GROUPS, dram_group_of
from des.mapper import cache
from des.mapper.params import MAPPER_VERSION, MapperParams, device_params
from des.mapper.schedule import TileSchedule, WaveGroup
from des.specs import DeviceSpec

__all__ = [
    "MAPPER_VERSION",
    "MapperParams",
    "ScheduleInfo",
    "TileSchedule",
    "WaveGroup",
    "clear_memory_cache",
    "device_params",
    "schedule_for",
    "search_schedule",
]


@dataclass(frozen=True)
class ScheduleInfo:
    """How :func:`schedule_for` obtained a schedule.

    Attributes
    ----------
    search_s : float
        Wall seconds spent searching the mapping space; 0 on a cache hit.
    cached : bool
        Whether the schedule came from a cache.
    source : str
        ``"memory"``, ``"disk"`` or ``"search"``.
    """

    search_s: float
    cached: bool
    source: str


def _import_numpy() -> None:
    """Import numpy before a search is timed: a process pays it once, not per search."""
    import numpy  # noqa: F401


def clear_memory_cache() -> None:
    """Forget the schedules held in memory (the disk cache is untouched)."""
    cache.clear_memory_cache()


def _params_of(device: DeviceSpec, operator: Any) -> MapperParams:
    """The device's parameters for ``operator`` (its class and DRAM group)."""
    op_class = getattr(operator, "op_class", "")
    try:
        group = dram_group_of(operator)
    except (AttributeError, DesError):
        group = None
    return device_params(device, op_class, group if group in DRAM_GROUPS else None)


def _check_device(device: DeviceSpec) -> None:
    """A device spec (its fields checked themselves when it was built)."""
    if not isinstance(device, DeviceSpec):
        raise DesError(f"expected a DeviceSpec, got {type(device).__name__}")


def search_schedule(
    device: DeviceSpec,
    operator: Any,
    params: MapperParams | None = None,
    *,
    exhaustive: bool = False,
) -> TileSchedule:
    """Search the fastest schedule of ``operator`` on ``device``, without any cache.

    Parameters
    ----------
    device : DeviceSpec
        The device.
    operator : des.operators.Operator
        Any operator of :mod:`des.operators`.
    params : MapperParams, optional
        Physical constants of the model; the defaults when omitted.
    exhaustive : bool
        For matmuls, evaluate every candidate in plain Python (slow; for checking).

    Returns
    -------
    TileSchedule

    Raises
    ------
    DesError
        For an unknown operator, a bad device spec, or an operator whose smallest tile
        does not fit the device's SRAM.
    """
    from des.mapper.attention import schedule_attention
    from des.mapper.matmul import schedule_matmul
    from des.mapper.rowwise import schedule_elementwise, schedule_rowwise

    _check_device(device)
    params = params or _params_of(device, operator)
    op_class = getattr(operator, "op_class", None)
    if getattr(operator, "kind", None) == "grouped_matmul":
        from des.mapper.grouped import schedule_grouped_matmul

        return schedule_grouped_matmul(operator, device, params)
    if op_class == "matmul":
        return schedule_matmul(operator, device, params, exhaustive=exhaustive)
    if op_class in ("softmax", "layernorm"):
        return schedule_rowwise(operator, device, params)
    if op_class in ("gelu", "elementwise"):
        return schedule_elementwise(operator, device, params)
    if op_class == "attention":
        return schedule_attention(operator, device, params)
    raise DesError(f"the mapper has no model for {operator!r}")


def schedule_for(
    device: DeviceSpec,
    operator: Any,
    params: MapperParams | None = None,
    *,
    use_cache: bool = True,
) -> tuple[TileSchedule, ScheduleInfo]:
    """The schedule of ``operator`` on ``device``, from a cache or a fresh search.

    Parameters
    ----------
    device : DeviceSpec
        The device.
    operator : des.operators.Operator
        Any operator of :mod:`des.operators`.
    params : MapperParams, optional
        Physical constants of the model (part of the cache key).
    use_cache : bool
        Look up and store the memory and disk caches (default), or always search.

    Returns
    -------
    schedule : TileSchedule
        The schedule; treat it and its ``mapping`` as read-only (it may be shared).
    info : ScheduleInfo
        Whether it came from a cache, and the seconds spent searching.

    Raises
    ------
    DesError
        As :func:`search_schedule`.
    """
    quick = params is None and use_cache
    if quick:
        schedule = cache.identity_get(device, operator)
        if schedule is not None:
            return schedule, ScheduleInfo(0.0, True, "memory")
    params = params or _params_of(device, operator)
    _check_device(device)
    if not callable(getattr(operator, "key", None)):
        raise DesError(f"the mapper has no model for {operator!r}")
    if not use_cache:
        _import_numpy()
        start = time.perf_counter()
        schedule = search_schedule(device, operator, params)
        return schedule, ScheduleInfo(time.perf_counter() - start, False, "search")
    key = cache.cache_key(device, operator, params)
    schedule = cache.memory_get(key)
    if schedule is not None:
        if quick:
            cache.identity_put(device, operator, schedule)
        return schedule, ScheduleInfo(0.0, True, "memory")
    schedule = cache.disk_get(key)
    if schedule is not None:
        cache.memory_put(key, schedule)
        if quick:
            cache.identity_put(device, operator, schedule)
        return schedule, ScheduleInfo(0.0, True, "disk")
    _import_numpy()
    start = time.perf_counter()
    schedule = search_schedule(device, operator, params)
    search_s = time.perf_counter() - start
    cache.memory_put(key, schedule)
    cache.disk_put(key, schedule)
    if quick:
        cache.identity_put(device, operator, schedule)
    return schedule, ScheduleInfo(search_s, False, "search")
