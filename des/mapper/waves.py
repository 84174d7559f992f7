"""Building wave groups that honour the schedule contract.

A wave alone on an idle device takes ``max(compute_s, dram_bytes / dram_bandwidth)``.
The cost models express three kinds of step with that one rule:

- an overlapped wave (double-buffered tile): compute and DRAM traffic at once;
- a serial step (a load nothing can hide, a kernel's first DRAM latency): a wave with
  only compute or only traffic;
- DRAM traffic is charged as *bus bytes*, ``physical bytes / dram_efficiency``, so a
  wave's DRAM time at the device's peak bandwidth is its time at the achievable one.

:class:`GroupBuilder` merges consecutive identical waves and computes the standalone
latency by replaying the groups, so ``replay_s(dram_bandwidth) == standalone_s`` holds
exactly.
"""

from __future__ import annotations

from typing import Any

from des.mapper.params import MapperParams
from des.mapper.schedule import TileSchedule, WaveGroup
from des.specs import DeviceSpec


class GroupBuilder:
    """Accumulates wave groups in execution order.

    Parameters
    ----------
    device : DeviceSpec
        The device the schedule is for.
    params : MapperParams
        Supplies the DRAM efficiency used to turn physical bytes into bus bytes.
    """

    def __init__(self, device: DeviceSpec, params: MapperParams) -> None:
        self.device = device
        self.params = params
        self.groups: list[WaveGroup] = []
        self.physical_bytes = 0.0

    def add(self, count: int, units: int, compute_s: float, physical_bytes: float) -> None:
        """Append ``count`` waves of ``units`` units; merge with an identical last group.

        Parameters
        ----------
        count : int
            Number of identical waves; zero adds nothing.
        units : int
            Compute units each wave holds.
        compute_s : float
            Compute seconds of one wave.
        physical_bytes : float
            DRAM bytes one wave really moves (charged as bytes / dram_efficiency).
        """
        count = int(count)
        if count <= 0:
            return
        if compute_s <= 0.0 and physical_bytes <= 0.0:
            return
        units = max(1, min(int(units), self.device.compute_units))
        bus = float(physical_bytes) / self.params.dram_efficiency
        group = WaveGroup(count=count, units=units, compute_s=float(compute_s), dram_bytes=bus)
        self.physical_bytes += count * float(physical_bytes)
        if self.groups:
            last = self.groups[-1]
            if (last.units, last.compute_s, last.dram_bytes) == (units, group.compute_s, bus):
                self.groups[-1] = WaveGroup(last.count + count, units, last.compute_s, bus)
                return
        self.groups.append(group)

    def add_latency(self, units: int) -> None:
        """The kernel's first DRAM access latency, which nothing overlaps."""
        self.add(1, units, self.params.dram_latency_s, 0.0)

    def add_transfer(self, units: int, physical_bytes: float) -> None:
        """A DRAM transfer that no compute overlaps (pipeline fill or drain)."""
        self.add(1, units, 0.0, physical_bytes)

    def build(
        self,
        operator: Any,
        tiles: int,
        mapping: dict[str, Any],
    ) -> TileSchedule:
        """The :class:`TileSchedule`, with ``standalone_s`` the replay of the groups."""
        groups = tuple(self.groups)
        if not groups:  # a degenerate operator still takes the first access latency
            groups = (WaveGroup(1, 1, self.params.dram_latency_s, 0.0),)
        mapping = dict(mapping)
        mapping["dram_bytes_physical"] = self.physical_bytes
        mapping["dram_efficiency"] = self.params.dram_efficiency
        schedule = TileSchedule(
            operator=operator.describe(),
            device=self.device.name,
            op_class=operator.op_class,
            groups=groups,
            tiles=int(tiles),
            standalone_s=0.0,
            mapping=mapping,
        )
        standalone = schedule.replay_s(self.device.dram_bandwidth_bytes_per_s)
        return TileSchedule(
            operator=schedule.operator,
            device=schedule.device,
            op_class=schedule.op_class,
            groups=groups,
            tiles=schedule.tiles,
            standalone_s=standalone,
            mapping=mapping,
        )
