"""Physical parameters of the mapper that a :class:`~des.specs.DeviceSpec` does not hold.

Every default is a measured property of real memory systems or kernels, sourced in a
comment, never a number chosen to fit one calibration row. They are the same for every
device; a study may pass its own :class:`MapperParams` (the cache keys on them).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from des.errors import DesError

#: Bumped by hand when what a schedule means changes without its code changing.
MAPPER_REVISION = "1"
#: The modules whose code decides a schedule: the cost models, the search and the
#: operators' FLOP and byte counts (the cache's own file format is versioned apart).
_COST_MODEL_SOURCES = (
    "attention.py", "grouped.py", "matmul.py", "params.py", "rowwise.py", "schedule.py", "waves.py", "__init__.py",
)


def cost_model_digest(here: Path | None = None) -> str:
    """SHA-256 (first 12 hex digits) of the cost model's source, so any edit changes it.

    ``here`` is the mapper package's folder (this one by default); the operators
    module is read beside it.
    """
    here = Path(__file__).resolve().parent if here is None else Path(here)
    digest = hashlib.sha256()
    for path in (*(here / name for name in _COST_MODEL_SOURCES), here.parent / "operators.py"):
        digest.update(path.name.encode("utf-8"))
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


#: The cost model's version: the revision and a digest of its code. Part of every
#: cache key and of the on-disk cache's folder, so a changed model never serves
#: schedules an older one stored.
MAPPER_VERSION = f"{MAPPER_REVISION}-{cost_model_digest()}"

#: Bytes of one partial sum: tensor cores and matrix units accumulate fp16/bf16/fp8
#: products in fp32 (NVIDIA A100 whitepaper, "FP16/BF16 with FP32 accumulate"; AMD CDNA2
#: whitepaper, MFMA fp32 accumulation), so split-K partials travel as fp32.
ACCUMULATOR_BYTES = 4


@dataclass(frozen=True)
class MapperParams:
    """Physical constants of the cost model.

    Attributes
    ----------
    dram_efficiency : float
        Fraction of the datasheet DRAM bandwidth that streaming kernels sustain. HBM
        loses about a tenth of its peak to refresh, row switches and read/write
        turnaround: BabelStream/STREAM-style kernels reach 85-92 % of peak on A100 and
        H100 (Deakin et al., BabelStream, published GPU results), and this project's
        H100 measurements agree (tests/data/h100/h100_ops.csv: a 64 Mi-element add
        runs at 90 %, a 1 x 12288 x 49152 GEMV at 92 %, a 4096 x 32768 GELU at 86 % of
        3.35 TB/s). The schedule charges DRAM traffic as ``bytes / dram_efficiency``
        at the device's peak bandwidth, so concurrent kernels share the same
        achievable bandwidth.
    dram_latency_s : float
        Latency of one DRAM access as seen by a compute unit: the first load of a
        kernel waits this long before any data arrives. Pointer-chasing measurements
        of HBM2e/HBM3 GPUs give 450-600 ns (Jia et al., "Dissecting the NVIDIA Volta
        GPU Architecture via Microbenchmarking", 2018; Chips and Cheese, "Nvidia's
        H100: Funny L2, and Tons of Bandwidth", 2023).
    matrix_efficiency : float
        Fraction of the matrix units' peak MAC rate a tile sustains in its main loop,
        beyond fill and drain: the instruction stream of a tensor-core GEMM cannot
        issue an MMA every cycle (shared-memory loads, address arithmetic and barriers
        share the issue slots). CUTLASS and cuBLAS main loops reach 90-95 % of the
        tensor-core peak on large A100 GEMMs (NVIDIA, "CUTLASS: Fast Linear Algebra in
        CUDA C++", 2017-2023 performance figures; LLMCompass uses 99 % for large
        tiles). The default is the middle of that range.
    vector_efficiency : float
        Fraction of the vector units' issue rate a row-wise or element-wise kernel
        sustains. The cost model counts every vector instruction slot; 1 by default,
        below 1 only where a device's measurements say so (``des calibrate``, when its
        tables tell it apart from DRAM: the H100's row-wise kernels reach 0.86).
    """

    dram_efficiency: float = 0.90
    dram_latency_s: float = 500e-9
    matrix_efficiency: float = 0.93
    vector_efficiency: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.dram_efficiency <= 1.0:
            raise DesError(f"dram_efficiency must be in (0, 1], got {self.dram_efficiency!r}")
        if not 0.0 < self.matrix_efficiency <= 1.0:
            raise DesError(f"matrix_efficiency must be in (0, 1], got {self.matrix_efficiency!r}")
        if not 0.0 < self.vector_efficiency <= 1.0:
            raise DesError(f"vector_efficiency must be in (0, 1], got {self.vector_efficiency!r}")
        if not self.dram_latency_s >= 0.0:
            raise DesError(f"dram_latency_s must be zero or positive, got {self.dram_latency_s!r}")

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict (for cache keys and mappings)."""
        return asdict(self)


#: The parameters used when none are given and the device has none fitted.
DEFAULT_PARAMS = MapperParams()


@functools.lru_cache(maxsize=256)
def device_params(device, op_class: str, dram_group: str | None = None) -> MapperParams:
    """The mapper parameters of an ``op_class`` operator on ``device`` (in DRAM group
    ``dram_group``, :func:`des.fitted.dram_group_of`; default its class's): the defaults
    with its fitted values (``DeviceSpec.fitted``, written by ``des calibrate``) in place.

    Remembered per (device, class, group): every schedule lookup asks, cache hits included."""
    fitted = getattr(device, "fitted", None)
    overrides = fitted.mapper_overrides(op_class, dram_group) if fitted is not None else {}
    return replace(DEFAULT_PARAMS, **overrides) if overrides else DEFAULT_PARAMS
