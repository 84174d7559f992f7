"""The tile schedule: the mapper's answer, which the event simulation executes.

A schedule says how an operator runs on one device as a sequence of *waves*: each wave
occupies some compute units for some seconds of compute while it moves some bytes
through DRAM; compute and DRAM traffic of a wave overlap (double buffering), so alone
on an idle device a wave takes ``max(compute_s, dram_bytes / dram_bandwidth)``.
Consecutive identical waves are stored once with a count, so a large GEMM costs a few
records, not thousands.

Contract with the simulator: run alone on an idle device of the same spec, executing
every wave group in order as above reproduces :attr:`TileSchedule.standalone_s`
exactly (:meth:`TileSchedule.replay_s` computes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WaveGroup:
    """``count`` consecutive identical waves.

    Attributes
    ----------
    count : int
        Number of waves in the group.
    units : int
        Compute units each wave occupies (one tile per unit).
    compute_s : float
        Seconds of compute of one wave on those units.
    dram_bytes : float
        DRAM bytes one wave reads and writes, overlapped with its compute.
    """

    count: int
    units: int
    compute_s: float
    dram_bytes: float

    def wave_s(self, dram_bandwidth_bytes_per_s: float) -> float:
        """Seconds of one wave alone on an idle device."""
        return max(self.compute_s, self.dram_bytes / dram_bandwidth_bytes_per_s)


@dataclass(frozen=True)
class TileSchedule:
    """How one operator runs on one device.

    Attributes
    ----------
    operator : str
        Operator description, e.g. ``"matmul(M=1024, K=12288, N=12288, fp16)"``.
    device : str
        Device spec name.
    op_class : str
        Class for launch overhead and metrics: ``"matmul"``, ``"softmax"``,
        ``"layernorm"``, ``"gelu"``, ``"elementwise"``, ``"attention"``.
    groups : tuple of WaveGroup
        The waves, in execution order.
    tiles : int
        Number of tiles (one per compute unit per wave).
    standalone_s : float
        Latency alone on an idle device, without launch overhead.
    mapping : dict
        The chosen mapping (tile sizes, loop order, splits), JSON-serialisable.
    """

    operator: str
    device: str
    op_class: str
    groups: tuple[WaveGroup, ...]
    tiles: int
    standalone_s: float
    mapping: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def waves(self) -> int:
        """Total number of waves."""
        return sum(group.count for group in self.groups)

    @property
    def dram_bytes(self) -> float:
        """Total DRAM traffic."""
        return sum(group.count * group.dram_bytes for group in self.groups)

    def replay_s(self, dram_bandwidth_bytes_per_s: float) -> float:
        """Latency obtained by executing the waves in order on an idle device."""
        return sum(group.count * group.wave_s(dram_bandwidth_bytes_per_s) for group in self.groups)
