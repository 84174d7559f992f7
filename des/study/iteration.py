"""What one serving iteration costs on a system, simulated by the engine and remembered.

:class:`IterationCost` builds the task graph of an iteration's batch
(:func:`workloads.iteration.build_iteration`) and runs it on the system with the
engine. Two ways, both event-simulated:

- ``exact``: the whole model, every layer (through the engine's exact fast path for
  repeated layers); with ``pp`` stages, each stage's layers on its own ranks;
- otherwise: the embedding and ``n`` layers in one run (:data:`ESTIMATE_LAYERS`: two,
  three for Kraken and five for Ladder, whose first and last layers differ), the layer
  period ``D`` the time between the ends of two layers that repeat, extended to every
  layer: ``T(L) = T_n + (L - n) D + T_head``. The head (the final norm, LM head and
  logits all-gather) is simulated on its own and remembered by the number of sequences
  that emit: within 3e-4 of the head after the layers (the ranks of a tensor-parallel
  group leave the last layer nearly together, and the head's launch no longer hides
  behind the last kernel), measured on Llama-3-70B iterations of prefill chunks,
  decodes and both; the logits all-gather is most of a decode iteration's events, and
  that cache hits nearly always. Kraken's head, whose gather of the sub-layers' outputs
  follows the last layer's traffic (alone it is 1e-2 of the iteration short), stays in
  the run after the layers (``T_head = 0``). The layer period agrees with the whole
  model to 1e-13 for the standard model (every layer of an iteration repeats the first).

All the engines of one :class:`IterationCost` share one memo (:mod:`des.memo`): a
kernel or an all-reduce of a token count already seen, run alone, as it is in the
standard and parallel layers of a tensor-parallel group, is replayed rather than
simulated again; unless ``exact``, an all-reduce of a new size is interpolated between
two recordings of its plan where a third showed their stretch affine.

Iterations are remembered by their shape: the prefill chunks ``(tokens, cached)``, the
number of decodes and their mean KV length. Unless ``exact``, cached lengths are rounded
up to the KV block size first (the paged cache holds whole blocks), so iterations that
differ by less than a block are simulated once.
"""

from __future__ import annotations

import math
from typing import Any

from des.errors import DesError
from des.operators import dtype_bytes
from des.study.point import build_model, build_system, group_for

#: Layers simulated by the fast estimate, by architecture: the period is the time
#: between the ends of the last two layers but one, or of the two when there are only
#: two. Ladder's first layers have no all-reduce to add yet, and its third settles (its
#: last adds the two left over); Kraken's second repeats its first to 1e-12 (measured on
#: Llama-3-8B iterations at TP 4 on a DGX A100: prefill, decode and mixed).
ESTIMATE_LAYERS = {"standard": 2, "parallel": 2, "ladder": 5, "kraken": 3}


class IterationCost:
    """Cost of serving iterations of ``model`` on ``system`` at TP ``tp``.

    Parameters
    ----------
    system, model : str or spec
        Preset names, paths or built specs.
    tp : int
        Tensor parallelism (the first ``tp`` devices, node-major, or ``devices``).
    arch : str
        ``standard``, ``parallel``, ``ladder`` or ``kraken`` (the Kraken model derived at
        degree ``tp``).
    runtime, comm_library, dtype : str
        As for a point (:class:`des.study.PointSpec`).
    block_tokens : int
        KV-cache block (the rounding of cached lengths in keys).
    exact : bool
        Simulate every layer of every iteration, and key on exact lengths.
    devices : tuple of str, optional
        The ranks (stage-major with ``pp``).
    pp : int
        Pipeline stages of ``tp`` ranks each: :meth:`cost_s` gives each stage's seconds.
    replay : bool
        Share one memo between the iterations' engines (:mod:`des.memo`; default), or
        simulate every kernel and collective (for comparison).
    """

    def __init__(self, system: Any, model: Any, tp: int, arch: str = "standard", runtime: str = "graph",
                 comm_library: str | None = None, dtype: str | None = None, block_tokens: int = 16,
                 exact: bool = False, devices: tuple[str, ...] | None = None, pp: int = 1,
                 replay: bool = True) -> None:
        from des.runtime import runtime_profile

        self.system = build_system(system)
        self.model = build_model(model)
        if self.model.moe is not None:
            raise DesError(f"des serve runs dense models; '{self.model.name}' has experts")
        self.tp, self.arch, self.exact, self.pp = tp, arch, exact, pp
        self.all_devices = group_for(self.system, tp, pp, devices)
        self.stages = [self.all_devices[k * tp:(k + 1) * tp] for k in range(pp)]
        self.devices = self.stages[0]
        if pp > 1:
            if arch == "kraken":
                raise DesError("--pp with kraken: Kraken carries each layer's all-reduce into the next layer, "
                               "across a stage boundary, which is not built; use standard, parallel or ladder")
            per_stage = self.model.layers // pp
            least = 1 if exact else ESTIMATE_LAYERS[arch]
            if self.model.layers % pp or per_stage < least:
                raise DesError(f"--pp {pp}: every stage takes the same whole number of the {self.model.layers} layers, "
                               f"at least {least} for {arch}")
        self.profile = runtime_profile(runtime)
        self.runtime = runtime
        self.library = comm_library or self.profile.comm_library
        self.dtype = dtype or self.model.dtype or "fp16"
        # Each rank sends its whole copy of the activations to its peer of the next stage.
        row_bytes = self.model.hidden * dtype_bytes(self.dtype)
        self._sends = [KvTransfer(self.system, self.stages[k], self.stages[k + 1], row_bytes * tp, block_tokens=1,
                                  library=self.library, launch_s=self.profile.comm_launch_s) for k in range(pp - 1)]
        if block_tokens < 1:
            raise DesError(f"the KV block must hold at least one token, got {block_tokens}")
        self.block_tokens = block_tokens
        from des.memo import Memo

        # Exact: every kernel and collective simulated (Kraken's overlapped layers carry
        # a replay's last-bit differences on, to 5e-6 over 96 layers of GPT-3 175B).
        self._memo = Memo(interpolate=True) if replay and not exact else False
        self._cache: dict[tuple, float] = {}
        self._heads: dict[int, float] = {}
        self.simulated = 0
        self.hits = 0
        self.events = 0

    # ------------------------------------------------------------------ memory

    def kv_blocks(self, token_budget: int) -> tuple[int, float]:
        """KV blocks one device holds beside the weights and an iteration's activations
        of ``token_budget`` tokens, and the bytes a block takes per device."""
        from workloads import build_workload

        workload = build_workload(self.model, self.arch, "prefill", self.tp, self.all_devices, seq=token_budget,
                                  dtype=self.dtype, pp=self.pp)
        memory = workload.memory
        per_token = memory.kv_cache_bytes / token_budget
        per_block = per_token * self.block_tokens
        capacity = min(self.system.device_spec(d).dram_capacity_bytes for d in self.devices)
        free = capacity - memory.weights_bytes - memory.activation_bytes
        if free < per_block:
            raise DesError(
                f"{self.model.name} at TP={self.tp} leaves no room for a KV block: weights "
                f"{memory.weights_bytes / 2**30:.1f} GiB and activations {memory.activation_bytes / 2**30:.2f} GiB "
                f"of {capacity / 2**30:.1f} GiB per device"
            )
        return int(free // per_block), per_block

    # ------------------------------------------------------------------ cost

    def _round(self, tokens: int) -> int:
        if self.exact or tokens <= 0:
            return tokens
        block = self.block_tokens
        return int(math.ceil(tokens / block) * block)

    def key(self, prefills, decodes: int, decode_kv: int, emitting: int) -> tuple:
        """The cache key of an iteration (lengths rounded unless exact)."""
        chunks = tuple(sorted((chunk, self._round(past)) for chunk, past in prefills))
        return chunks, decodes, self._round(decode_kv) if decodes else 0, emitting

    def cost_s(self, prefills, decodes: int, decode_kv: int, emitting: int) -> float | tuple[float, ...]:
        """Seconds of one iteration (remembered by :meth:`key`); with ``pp`` stages, the
        seconds of each stage (:meth:`_stage_costs`)."""
        key = self.key(prefills, decodes, decode_kv, emitting)
        if key in self._cache:
            self.hits += 1
            return self._cache[key]
        chunks, n, kv, out = key
        if self.exact and self.pp > 1:
            seconds = self._exact_stage_costs(chunks, n, kv, out)
        elif self.exact:
            seconds = self._simulate(chunks, n, kv, out, None)[1]
        else:
            simulated = ESTIMATE_LAYERS[self.arch]
            apart = self.arch != "kraken"
            period, last = self._simulate(chunks, n, kv, out, simulated, head=not apart)
            if apart and out not in self._heads:
                self._heads[out] = self._simulate((), 1, 1, out, 0, head=True, devices=self.stages[-1])[1]
            head = self._heads[out] if apart else 0.0
            if self.pp == 1:
                seconds = last + (self.model.layers - simulated) * period + head
            else:
                seconds = self._stage_costs(sum(c for c, _p in chunks) + n, period, last, simulated, head)
        self._cache[key] = seconds
        self.simulated += 1
        return seconds

    def _stage_costs(self, tokens: int, period: float, last: float, simulated: int, head: float) -> tuple[float, ...]:
        """Each stage's seconds: its share of the layers at the period measured on the
        first stage (the first stage with the embedding, the last with the head), and,
        but for the last, the send of its ``tokens`` rows of activations to the same
        rank of the next stage (event-simulated, all ranks at once)."""
        share = self.model.layers // self.pp
        times = [share * period] * self.pp
        times[0] = last + (share - simulated) * period
        times[-1] += head
        for stage in range(self.pp - 1):
            times[stage] += self._send(stage, tokens)
        return tuple(times)

    def _exact_stage_costs(self, chunks, decodes: int, decode_kv: int, emitting: int) -> tuple[float, ...]:
        """Each stage's seconds with every layer of it simulated on its own ranks (the
        first with the embedding, the last with the head), and, but for the last, its
        send to the next stage."""
        share = self.model.layers // self.pp
        tokens = sum(c for c, _p in chunks) + decodes
        times = []
        for stage in range(self.pp):
            last = stage == self.pp - 1
            seconds = self._simulate(chunks, decodes, decode_kv, emitting, share, head=last,
                                     devices=self.stages[stage], first_layer=stage * share)[1]
            times.append(seconds if last else seconds + self._send(stage, tokens))
        return tuple(times)

    def _send(self, stage: int, tokens: int) -> float:
        """Seconds to send ``tokens`` rows of activations from ``stage`` to the next."""
        return self._sends[stage](tokens)

    def _simulate(self, prefills, decodes, decode_kv, emitting, layers, head: bool = True,
                  devices: tuple[str, ...] | None = None, first_layer: int = 0) -> tuple[float, float]:
        """The layer period (:data:`ESTIMATE_LAYERS`; 0 with fewer than two layers) and the latency."""
        from des.engine import Engine
        from des.runtime import runtime_launch
        from des.spans import Trace
        from workloads.iteration import build_iteration

        graph = build_iteration(self.model, self.arch, self.tp, devices or self.devices, prefills, decodes, decode_kv,
                                emitting, layers=layers, dtype=self.dtype, head=head, first_layer=first_layer)
        engine = Engine(self.system, trace=Trace(enabled=False), launch_fn=runtime_launch(self.runtime),
                        comm_library=self.library, comm_launch_s=self.profile.comm_launch_s, fast_path=True,
                        memo=self._memo)
        result = engine.run(graph)
        self.events += result.events_simulated
        period = 0.0
        if layers is not None and layers >= 2:
            ends = result.task_end_s

            def end_of(layer: int) -> float:
                return max(ends[task.name] for task in graph if task.layer is not None and task.layer <= layer)

            upto = first_layer + (layers - 1 if layers >= 3 else layers)
            period = end_of(upto) - end_of(upto - 1)
        return period, result.latency_s


class KvTransfer:
    """Seconds to send one request's KV cache from a prefill group to a decode group.

    Prefill rank ``i`` sends its share (``tokens x bytes_per_token / len(prefill)``) to
    decode rank ``i mod len(decode)``, all at once, event-simulated on the system (NCCL
    point-to-point; :mod:`des.collectives.alltoall`). Remembered by the tokens rounded up
    to the KV block. (With ``block_tokens=1`` it also times a pipeline stage's
    activations sent rank to rank to the next stage.) ``launch_s`` is the caller's cost
    per library call (the engine's ``comm_launch_s``; the library's own by default).
    """

    def __init__(self, system, prefill: tuple[str, ...], decode: tuple[str, ...], bytes_per_token: float,
                 block_tokens: int = 16, library: str | None = None, launch_s: float | None = None) -> None:
        self.system, self.prefill, self.decode = system, tuple(prefill), tuple(decode)
        self.bytes_per_token, self.block_tokens, self.library = bytes_per_token, block_tokens, library
        self.launch_s = launch_s
        self._cache: dict[int, float] = {}

    def __call__(self, tokens: int) -> float:
        from des.engine import Engine
        from des.spans import Trace
        from des.taskgraph import CollectiveTask, TaskGraph

        key = int(math.ceil(tokens / self.block_tokens) * self.block_tokens)
        if key not in self._cache:
            graph = TaskGraph()
            share = key * self.bytes_per_token / len(self.prefill)
            for i, src in enumerate(self.prefill):
                dst = self.decode[i % len(self.decode)]
                graph.add(CollectiveTask(f"kv{i}", "send", (src, dst), share, stream=f"kv{i}"))
            engine = Engine(self.system, trace=Trace(enabled=False), comm_library=self.library or "nccl",
                            comm_launch_s=self.launch_s)
            self._cache[key] = engine.run(graph).latency_s
        return self._cache[key]
