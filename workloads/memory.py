"""Per-device memory of a workload: weights, KV cache and the largest live activations.

- **Weights**: per layer, Megatron splits the QKV and FFN-up (gate and up, for SwiGLU)
  GEMMs by columns and the output and FFN-down GEMMs by rows, so with this device's
  query width ``a = heads x head_dim / t``, key width ``kv`` (``kv_heads x head_dim / t``,
  or one replicated head), FFN ``f = F / t``: ``w (a + 2 kv) + a w + 2 w f`` weights
  (``3 w f`` for SwiGLU), the column-parallel biases where the model has them, and the
  row-parallel biases and norms replicated (the parallel architecture has one norm);
  Kraken holds its whole sub-layer. An MoE layer holds the router, this rank's experts
  (all of them at EP 1, their width split by TP; ``E / ep`` whole ones beyond) and the
  shared experts (split by TP at EP 1, whole beyond). The whole model adds the vocabulary-parallel token
  embedding ``V_pad / t x width``, the replicated position table (learned positions
  only) and final norm, an untied LM head, and Kraken's ``N e x e`` final projection.
- **KV cache**: keys and values of every simulated layer, ``2 x layers x B x slots x
  kv`` elements, ``slots`` being the prompt (prefill) or the KV length plus the new
  token (decode): grouped-query attention shrinks it by ``heads / kv_heads``.
- **Activations**: the residual stream, plus the largest inputs-plus-outputs of any
  kernel (weights excluded; the score matrix of unfused prefill attention dominates
  there), plus the largest collective buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from des.errors import DoesNotFitError
from des.operators import GroupedMatmul, LayerNorm, Matmul, RMSNorm
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.units import GiB
from workloads.shapes import Shapes


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one device needs.

    Attributes
    ----------
    weights_bytes : float
        Parameters held by the device.
    kv_cache_bytes : float
        Keys and values of the simulated layers.
    activation_bytes : float
        Largest live activation set.
    """

    weights_bytes: float
    kv_cache_bytes: float
    activation_bytes: float

    @property
    def total_bytes(self) -> float:
        """Weights, KV cache and activations together."""
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes

    def as_dict(self) -> dict[str, float]:
        """``{"weights", "kv_cache", "activations", "total"}`` in bytes."""
        return {
            "weights": self.weights_bytes,
            "kv_cache": self.kv_cache_bytes,
            "activations": self.activation_bytes,
            "total": self.total_bytes,
        }


def weight_elements(shapes: Shapes, arch: str, layers: int, whole: bool, tied: bool = True, moe=None) -> float:
    """Parameters one device holds (elements, not bytes); ``moe`` a
    :class:`workloads.moe.MoeLayout` for a mixture of experts."""
    s = shapes
    w, f = s.width, s.ffn_width
    a, kv = s.attn_width, s.kv_width  # this device's query and key (= value) widths
    norm = (2 if s.norm == "layernorm" else 1) * w
    norms = 1 if arch == "parallel" else 2
    per_matrix = 3 if s.activation == "swiglu" else 2
    ffn_matrices = per_matrix * w * f
    attention = w * (a + 2 * kv) + a * w
    attn_biases = {"all": a + 2 * kv, "qkv": a + 2 * kv, "none": 0}[s.biases]
    ffn_biases = (per_matrix - 1) * f if s.biases == "all" else 0
    replicated = (2 * w if s.biases == "all" else 0) + norms * norm  # row-parallel biases, norms
    moe_layers = sum(1 for index in range(layers) if moe is not None and moe.is_moe(index))
    total = layers * (attention + attn_biases + replicated) + (layers - moe_layers) * (ffn_matrices + ffn_biases)
    if moe_layers:
        # The router (replicated), this rank's experts, the shared experts and their gate.
        experts = moe.experts_local * per_matrix * w * moe.expert_width
        shared = per_matrix * w * moe.shared_width + (w if moe.shared_gate else 0)
        total += moe_layers * (w * moe.experts + experts + shared)
    if whole:
        embedding = s.vocab_per_device * w
        total += embedding * (1 if tied else 2) + s.position_table_rows * w + norm
        if arch == "kraken":
            total += s.tp * w * w + w
    return float(total)


def _activation_io_bytes(operator: object) -> float:
    """Bytes a kernel reads and writes, its weights excluded."""
    if isinstance(operator, Matmul):
        return float((operator.M * operator.K + operator.M * operator.N) * operator.bytes_per_element)
    if isinstance(operator, (LayerNorm, RMSNorm)):
        return 2.0 * operator.elements * operator.bytes_per_element
    if isinstance(operator, GroupedMatmul):
        return float(sum(operator.tokens) * (operator.K + operator.N) * operator.bytes_per_element)
    return float(operator.min_dram_bytes)  # type: ignore[attr-defined]


def estimate_memory(
    shapes: Shapes, arch: str, layers: int, whole: bool, graph: TaskGraph, device: str, tied: bool = True, moe=None
) -> MemoryEstimate:
    """The :class:`MemoryEstimate` of one device of a built graph.

    Parameters
    ----------
    shapes : Shapes
        Per-device dimensions.
    arch : str
        Architecture.
    layers : int
        Layers simulated.
    whole : bool
        Whether embeddings and LM head are included.
    graph : TaskGraph
        The built graph (its kernels on ``device`` give the activation peak).
    device : str
        The device to estimate.
    tied : bool
        Whether the LM head shares the embedding.
    moe : workloads.moe.MoeLayout, optional
        The experts of a mixture of experts (this device's share of them is counted).
    """
    s = shapes
    bpe = s.bytes_per_element
    weights = weight_elements(s, arch, layers, whole, tied, moe) * bpe
    kv = 2.0 * layers * s.batch * s.kv_cache_len * s.kv_width * bpe
    kernel_peak = 0.0
    buffer_peak = 0.0
    for task in graph:
        if isinstance(task, KernelTask) and task.device == device and task.operator is not None:
            kernel_peak = max(kernel_peak, _activation_io_bytes(task.operator))
        elif isinstance(task, CollectiveTask) and device in task.group:
            buffer_peak = max(buffer_peak, task.nbytes)
    activations = s.residual_bytes + kernel_peak + buffer_peak
    return MemoryEstimate(weights, kv, activations)


def check_memory(workload: object, capacity_bytes: float, where: str = "the device") -> None:
    """Raise if ``workload`` needs more memory per device than ``capacity_bytes``.

    Parameters
    ----------
    workload : Workload
        A built workload.
    capacity_bytes : float
        DRAM capacity of one device.
    where : str
        The device as the message should name it, e.g. ``"gpu0 (a100)"``.

    Raises
    ------
    DoesNotFitError
        (a :class:`DesError`) naming the need, split into weights, KV cache and
        activations, and the capacity.
    """
    memory: MemoryEstimate = workload.memory  # type: ignore[attr-defined]
    if memory.total_bytes <= capacity_bytes:
        return
    raise DoesNotFitError(
        f"{workload.base_model.name} {workload.arch} TP={workload.tp} needs "  # type: ignore[attr-defined]
        f"{memory.total_bytes / GiB:.1f} GiB per device (weights {memory.weights_bytes / GiB:.1f} GiB, "
        f"KV cache {memory.kv_cache_bytes / GiB:.2f} GiB, activations {memory.activation_bytes / GiB:.2f} GiB) "
        f"but {where} has {capacity_bytes / GiB:.1f} GiB"
    )
