"""Helpers shared by the mapper tests (no tests here): device presets and small devices."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from helpers import calibration_path

from des.specs import DeviceSpec
from topologies import load_device

REPO = Path(__file__).resolve().parents[1]
#: The calibration folder through des's one lookup ($DES_CALIBRATION_DIR honoured);
#: tests that need it skip where it is absent.
CALIBRATION = calibration_path()


def load_preset(name: str) -> DeviceSpec:
    """A device preset from topologies/devices."""
    return load_device(name)


def tiny_device(**changes: object) -> DeviceSpec:
    """One unit with one 16x16 array, fast L2 and DRAM: easy to work out by hand."""
    fields = {
        "name": "tiny",
        "compute_units": 1,
        "clock_hz": 1e9,
        "systolic_arrays_per_unit": 1,
        "systolic_array_rows": 16,
        "systolic_array_cols": 16,
        "macs_per_pe_per_cycle": 1.0,
        "vector_flops_per_cycle_per_unit": 64.0,
        "vector_lanes_per_unit": 1,
        "vector_lane_width": 32,
        "exp_vector_flops": 35.0,
        "sram_bytes_per_unit": 64 * 1024.0,
        "l2_bytes": 1024 * 1024.0,
        "l2_bandwidth_bytes_per_cycle": 1e12,
        "dram_bandwidth_bytes_per_s": 1e15,
        "dram_capacity_bytes": 1e9,
    }
    fields.update(changes)
    return DeviceSpec(**fields)  # type: ignore[arg-type]


def with_fields(device: DeviceSpec, **changes: object) -> DeviceSpec:
    """A copy of ``device`` with some fields changed."""
    return dataclasses.replace(device, **changes)
