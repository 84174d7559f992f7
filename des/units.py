"""SI units and conversions.

Everything inside des is in SI base units: seconds, bytes, bytes per second, FLOP per
second and hertz. Units live in names (``latency_s``, ``bandwidth_bytes_per_s``), never
in values. This module holds the constants to convert to and from those units and a
parser for human-written quantities such as ``"25 GB/s"`` or ``"8.92 us"`` that a YAML
file may use instead of a bare number.
"""

from __future__ import annotations

import math
import re

# Decimal (SI) prefixes: datasheets quote bandwidth and FLOP/s in these.
KILO = 1e3
MEGA = 1e6
GIGA = 1e9
TERA = 1e12
PETA = 1e15

# Binary prefixes: memory capacities and message sizes are usually powers of two.
KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

# Time.
NS = 1e-9
US = 1e-6
MS = 1e-3
#: Microseconds per second (trace timestamps and tables in microseconds multiply by it).
US_PER_S = 1e6

#: Unit symbol -> (dimension, factor to the SI base unit of that dimension).
_UNITS: dict[str, tuple[str, float]] = {
    # time
    "s": ("time", 1.0),
    "ms": ("time", MS),
    "us": ("time", US),
    "µs": ("time", US),
    "ns": ("time", NS),
    # size
    "B": ("bytes", 1.0),
    "kB": ("bytes", KILO),
    "KB": ("bytes", KILO),
    "MB": ("bytes", MEGA),
    "GB": ("bytes", GIGA),
    "TB": ("bytes", TERA),
    "KiB": ("bytes", KiB),
    "MiB": ("bytes", MiB),
    "GiB": ("bytes", GiB),
    "TiB": ("bytes", TiB),
    # bandwidth (bytes, never bits)
    "B/s": ("bandwidth", 1.0),
    "kB/s": ("bandwidth", KILO),
    "MB/s": ("bandwidth", MEGA),
    "GB/s": ("bandwidth", GIGA),
    "TB/s": ("bandwidth", TERA),
    "GiB/s": ("bandwidth", GiB),
    # frequency
    "Hz": ("frequency", 1.0),
    "kHz": ("frequency", KILO),
    "MHz": ("frequency", MEGA),
    "GHz": ("frequency", GIGA),
    # throughput
    "FLOP/s": ("flops", 1.0),
    "GFLOP/s": ("flops", GIGA),
    "TFLOP/s": ("flops", TERA),
    "PFLOP/s": ("flops", PETA),
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/]+)?\s*$")


def parse_quantity(value: object, dimension: str) -> float:
    """Convert a number or a string with a unit to the SI base unit of ``dimension``.

    Parameters
    ----------
    value : int, float or str
        A bare number (already in base units), or a string such as ``"25 GB/s"``,
        ``"1.41 GHz"``, ``"80 GiB"``, ``"8.92 us"`` or ``"2.5e9"``.
    dimension : str
        One of ``"time"``, ``"bytes"``, ``"bandwidth"``, ``"frequency"``, ``"flops"``
        or ``"number"`` (dimensionless: no unit allowed).

    Returns
    -------
    float
        The value in seconds, bytes, bytes per second, hertz or FLOP per second.

    Raises
    ------
    ValueError
        If the string is not a number with a unit of the right dimension, or the
        value is not finite.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise ValueError(f"cannot read {value!r} as a number with a unit")
        number = float(match.group(1))
        unit = match.group(2)
        if unit is not None:
            if unit in ("b", "Gb/s", "Mb/s", "Kb/s", "kb/s", "Tb/s"):
                raise ValueError(f"{value!r} is in bits; des uses bytes (8 bits = 1 B)")
            if unit not in _UNITS:
                raise ValueError(f"unknown unit {unit!r} in {value!r}")
            unit_dimension, factor = _UNITS[unit]
            if unit_dimension != dimension:
                raise ValueError(
                    f"{value!r} is a {unit_dimension} but a {dimension} is expected"
                )
            number *= factor
    else:
        raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


def format_seconds(seconds: float) -> str:
    """Format a duration with a readable unit, e.g. ``"12.5 us"``."""
    magnitude = abs(seconds)
    if magnitude >= 1.0 or magnitude == 0.0:
        return f"{seconds:.4g} s"
    if magnitude >= MS:
        return f"{seconds / MS:.4g} ms"
    if magnitude >= US:
        return f"{seconds / US:.4g} us"
    return f"{seconds / NS:.4g} ns"


def format_bytes(size_bytes: float) -> str:
    """Format a size with a binary prefix, e.g. ``"64 MiB"``."""
    for name, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(size_bytes) >= factor:
            return f"{size_bytes / factor:.4g} {name}"
    return f"{size_bytes:.4g} B"


def format_count(count: int, singular: str, plural: str | None = None) -> str:
    """``1 layer``, ``2 layers``, ``1 process``, ``3 processes``."""
    word = singular if count == 1 else (plural if plural is not None else singular + "s")
    return f"{count:,} {word}"
