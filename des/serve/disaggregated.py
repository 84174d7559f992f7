"""Disaggregated serving: prefill on one device group, decode on another, KV sent between.

Splitwise and DistServe run prompts and generation on separate groups: prefill
iterations (chunked to the token budget) on the prefill group, decode iterations on the
decode group, each request's KV cache sent from one to the other when its prefill ends
(event-simulated over the links: each prefill rank sends its share to a decode rank,
``transfer_s(tokens)``). The first token comes out of the prefill (the time to first
token ends there); the request then waits for its KV to arrive and for blocks on the
decode group, and decodes there. Each group has its own clock; the simulation always
advances the one that is behind, so the two run side by side. A decode that needs a KV
block when none is free preempts the latest admitted request, which goes back to the
prefill group to be recomputed (its prompt and the tokens it generated).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from des.errors import DesError
from des.serve.requests import Request
from des.serve.scheduler import ServeResult, _State, admit_chunks, preempt_latest


def serve_disaggregated(requests: list[Request], prefill_cost: Callable, decode_cost: Callable,
                        transfer_s: Callable[[int], float], prefill_blocks: int, decode_blocks: int, block_tokens: int,
                        token_budget: int = 2048, max_batch: int = 256, progress=None) -> ServeResult:
    """Serve ``requests`` with prefill and decode on separate groups (module docstring).

    ``prefill_cost`` and ``decode_cost`` are :meth:`~des.study.iteration.IterationCost.cost_s`
    of the two groups; the block counts are each group's KV cache.
    """
    states = [_State(r) for r in sorted(requests, key=lambda r: (r.arrival_s, r.id))]
    largest = max(r.prompt_tokens + r.output_tokens for r in requests)
    need = math.ceil(largest / block_tokens)
    if need > min(prefill_blocks, decode_blocks):
        raise DesError(f"a request of {largest} tokens needs {need} KV blocks; the groups hold "
                       f"{prefill_blocks} and {decode_blocks}")
    result = ServeResult(states, kv_blocks=decode_blocks)
    pending = list(states)
    p_wait, p_run, p_free, p_clock = [], [], prefill_blocks, 0.0
    d_ready: list[tuple[float, int, _State]] = []   # (KV arrived at, order, state)
    d_run, d_free, d_clock = [], decode_blocks, 0.0
    releases: list[tuple[float, int]] = []          # prefill blocks freed when their KV has left
    admitted, done = 0, 0

    def blocks_for(tokens: int) -> int:
        return math.ceil(tokens / block_tokens)

    while done < len(states):
        p_busy = bool(p_wait or p_run or (pending and pending[0].request.arrival_s <= p_clock))
        if not p_busy and pending:
            p_next = pending[0].request.arrival_s
        else:
            p_next = p_clock if p_busy else math.inf
        d_busy = bool(d_run or any(t <= d_clock for t, _o, _s in d_ready))
        d_next = d_clock if d_busy else min((t for t, _o, _s in d_ready), default=math.inf)
        if p_next <= d_next:
            # ----------------------------------------------------------- prefill group
            p_clock = max(p_clock, p_next)
            while pending and pending[0].request.arrival_s <= p_clock:
                p_wait.append(pending.pop(0))
            for at, blocks in [r for r in releases if r[0] <= p_clock]:
                releases.remove((at, blocks))
                p_free += blocks
            candidates = sorted(p_run, key=lambda s: s.admitted) + sorted(
                p_wait, key=lambda s: (s.request.arrival_s, s.request.id))
            batch, _budget, p_free, admitted = admit_chunks(
                candidates, p_wait, p_run, token_budget, max_batch, p_free, block_tokens, admitted
            )
            if not batch:
                # Nothing fits until a transfer frees blocks: wait for the earliest one.
                p_clock = min([at for at, _b in releases] + [d_clock if d_busy else math.inf]) if releases else max(
                    p_clock, d_next if d_next < math.inf else p_clock)
                if not releases and d_next == math.inf and not pending:
                    raise DesError("the prefill group's KV cache cannot hold the next chunk")
                continue
            finishing = [s for s, chunk in batch if s.cached + chunk >= s.target]
            p_clock += prefill_cost([(chunk, s.cached) for s, chunk in batch], 0, 0, len(finishing))
            for state, chunk in batch:
                state.cached += chunk
            for state in finishing:
                p_run.remove(state)
                state.generated += 1
                if state.first_token_s is None:
                    state.first_token_s = p_clock
                arrived = p_clock + transfer_s(state.cached)
                releases.append((arrived, state.blocks))
                state.blocks = 0
                if state.generated >= state.request.output_tokens:
                    state.finish_s = p_clock
                    done += 1
                    if progress is not None:
                        progress.advance()
                else:
                    d_ready.append((arrived, state.request.id, state))
            result.iterations.append({"end_s": p_clock, "seconds": 0.0, "prefill_tokens": sum(c for _s, c in batch),
                                      "decodes": 0, "batch": len(batch), "kv_blocks_used": prefill_blocks - p_free,
                                      "kv_occupancy": (prefill_blocks - p_free) / prefill_blocks, "waiting": len(p_wait),
                                      "group": "prefill"})
            continue
        # --------------------------------------------------------------- decode group
        d_clock = max(d_clock, d_next)
        for entry in sorted([e for e in d_ready if e[0] <= d_clock]):
            state = entry[2]
            extra = blocks_for(state.cached + 1)
            if extra > d_free or len(d_run) >= max_batch:
                break
            d_ready.remove(entry)
            d_free -= extra
            state.blocks = extra
            state.admitted = admitted
            admitted += 1
            d_run.append(state)
        batch = []
        for state in sorted(d_run, key=lambda s: s.admitted):
            if state not in d_run:
                continue
            extra = blocks_for(state.cached + 1) - state.blocks
            while extra > d_free and any(s is not state for s in d_run):
                # The victim is recomputed on the prefill group.
                d_free += preempt_latest(d_run, state, batch, p_wait, result)
            if extra > d_free:
                continue
            d_free -= extra
            state.blocks += extra
            batch.append(state)
        if not batch:
            d_clock = min((t for t, _o, _s in d_ready if t > d_clock), default=p_clock)
            continue
        mean_kv = round(sum(s.cached + 1 for s in batch) / len(batch))
        d_clock += decode_cost([], len(batch), mean_kv, len(batch))
        for state in batch:
            state.cached += 1
            state.generated += 1
            if state.generated >= state.request.output_tokens:
                state.finish_s = d_clock
                d_run.remove(state)
                d_free += state.blocks
                state.blocks = 0
                done += 1
                if progress is not None:
                    progress.advance()
        result.iterations.append({"end_s": d_clock, "seconds": 0.0, "prefill_tokens": 0, "decodes": len(batch),
                                  "batch": len(batch), "kv_blocks_used": decode_blocks - d_free,
                                  "kv_occupancy": (decode_blocks - d_free) / decode_blocks, "waiting": len(d_ready),
                                  "group": "decode"})
    result.iterations.sort(key=lambda it: it["end_s"])
    return result
