"""The inference engines' own all-reduce: TensorRT-LLM's and vLLM's custom kernels.

Both engines send small and medium all-reduces through their own one-shot or two-shot
kernels over NVLink peer memory (:mod:`des.collectives.peer`) and larger ones, or
other collectives, through NCCL.

TensorRT-LLM (``cpp/tensorrt_llm/plugins/ncclPlugin/allreducePlugin.cpp``,
``selectImplementation``, and ``customAllReduceUtils.h``, ``getMaxRequiredWorkspaceSize``,
releases 0.9-0.12, the paper's 0.12.0.dev): above the workspace (16 MB for 2 ranks,
8 MB above) NCCL; 2 ranks one-shot; up to 4 ranks one-shot below 1 MB, else two-shot;
more ranks one-shot below 500 kB, else two-shot. The kernels run at most 24 thread
blocks (``MAX_ALL_REDUCE_BLOCKS``, customAllReduceKernels.h) of up to 512 threads, each
thread moving 16 bytes per load.

vLLM (``vllm/distributed/device_communicators/custom_all_reduce.py`` and
``csrc/custom_all_reduce.cuh``, v0.4-0.6): used for 2, 4, 6 or 8 ranks on fully
NVLink-connected GPUs below its 8 MiB buffer; two ranks one-stage; otherwise one-stage
below 512 KiB (4 ranks or fewer) or 256 KiB (up to 8), else two-stage; NCCL above.
Its kernels run at most 36 blocks of 512 threads.
"""

from __future__ import annotations

import math

from des.comm.facts import GroupFacts
from des.specs import CollectiveParams

#: TensorRT-LLM's thresholds (bytes) and block limit.
TRTLLM_WORKSPACE_2_RANKS = 16_000_000
TRTLLM_WORKSPACE = 8_000_000
TRTLLM_ONESHOT_UP_TO_4 = 1_000_000
TRTLLM_ONESHOT_ABOVE_4 = 500_000
TRTLLM_MAX_BLOCKS = 24
#: vLLM's thresholds (bytes) and block limit.
VLLM_MAX_BYTES = 8 * 1024 * 1024
VLLM_ONESTAGE_UP_TO_4 = 512 * 1024
VLLM_ONESTAGE_UP_TO_8 = 256 * 1024
VLLM_WORLD_SIZES = (2, 4, 6, 8)
VLLM_MAX_BLOCKS = 36
#: Threads per block and bytes each loads at once (16-byte vector loads).
THREADS_PER_BLOCK = 512
BYTES_PER_THREAD = 16


def trtllm_choice(facts: GroupFacts, kind: str, nbytes: float) -> str:
    """``oneshot``, ``twoshot`` or ``nccl``: what TensorRT-LLM's plugin runs."""
    n = facts.ranks
    peer_ok = kind == "allreduce" and facts.nodes == 1 and facts.intra == "nvlink"
    workspace = TRTLLM_WORKSPACE_2_RANKS if n <= 2 else TRTLLM_WORKSPACE
    if not peer_ok or nbytes > workspace:
        return "nccl"
    if n <= 2:
        return "oneshot"
    if n <= 4:
        return "oneshot" if nbytes < TRTLLM_ONESHOT_UP_TO_4 else "twoshot"
    return "oneshot" if nbytes < TRTLLM_ONESHOT_ABOVE_4 else "twoshot"


def vllm_choice(facts: GroupFacts, kind: str, nbytes: float) -> str:
    """``oneshot``, ``twoshot`` or ``nccl``: what vLLM's custom all-reduce runs."""
    n = facts.ranks
    full_nvlink = facts.intra == "nvlink"
    usable = (
        kind == "allreduce" and facts.nodes == 1 and n in VLLM_WORLD_SIZES and (full_nvlink or n == 2)
        and nbytes < VLLM_MAX_BYTES and int(nbytes) % 16 == 0
    )
    if not usable:
        return "nccl"
    if n == 2:
        return "oneshot"
    if (n <= 4 and nbytes < VLLM_ONESTAGE_UP_TO_4) or (n <= 8 and nbytes < VLLM_ONESTAGE_UP_TO_8):
        return "oneshot"
    return "twoshot"


def peer_params(facts: GroupFacts, algorithm: str, nbytes: float, library: str, launch_overhead_s: float,
                link_fraction: float, barrier_s: float) -> CollectiveParams:
    """Parameters of a one-shot or two-shot kernel.

    Blocks: one per ``THREADS_PER_BLOCK x BYTES_PER_THREAD`` bytes of what each rank
    reduces (the whole message in one-shot, its shard in two-shot), at most the
    engine's limit; each block one compute unit. ``barrier_s`` is the flag exchange's
    latency; ``link_fraction`` the achieved fraction of the links (the NCCL tuning's,
    the same NVLink).
    """
    share = nbytes if algorithm == "oneshot" else nbytes / facts.ranks
    limit = TRTLLM_MAX_BLOCKS if library == "trtllm" else VLLM_MAX_BLOCKS
    blocks = max(1, min(limit, math.ceil(share / (THREADS_PER_BLOCK * BYTES_PER_THREAD))))
    return CollectiveParams(
        launch_latency_s=launch_overhead_s,
        step_latency_s=barrier_s,
        bandwidth_efficiency=link_fraction,
        chunk_bytes=THREADS_PER_BLOCK * BYTES_PER_THREAD * blocks * 8,
        compute_units=blocks,
        channels=blocks,
        library=library,
    )
