"""A simulated device: its compute units and its DRAM."""

from __future__ import annotations

import simpy

from des.hardware.bandwidth import SharedBandwidth
from des.hardware.compute import ComputePool
from des.specs import DeviceSpec


class Device:
    """Live SimPy resources of one accelerator.

    Parameters
    ----------
    env : simpy.Environment
        The environment.
    name : str
        Node name in the system graph (e.g. ``gpu3``).
    spec : DeviceSpec
        What the device is.
    """

    def __init__(self, env: simpy.Environment, name: str, spec: DeviceSpec) -> None:
        self.env = env
        self.name = name
        self.spec = spec
        self.compute = ComputePool(env, spec.compute_units, f"{name} compute")
        self.dram = SharedBandwidth(env, spec.dram_bandwidth_bytes_per_s, f"{name} dram")
