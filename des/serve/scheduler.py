"""Continuous batching over a paged KV cache, in the manner of vLLM's scheduler.

Each iteration the scheduler fills a batch and the iteration's cost
(:class:`des.study.iteration.IterationCost`) moves the clock:

1. every running request that is decoding gets one token, oldest first, while the batch
   has room (``max_batch`` sequences); a token that starts a new KV block needs a free
   block, and when none is left the most recently admitted running request is
   preempted: its blocks are freed and it will be prefilled again, its prompt and the
   tokens it generated (vLLM's *recompute* preemption);
2. requests part-way through their prefill get their next chunk, then waiting requests
   are admitted in the policy's order (``fcfs``: by arrival; ``sjf``: shortest prompt
   plus output first), each chunk as large as the token budget left (chunked prefill,
   batched with the decodes), each only if its chunk's KV blocks are free;
3. an iteration whose chunk completes a prefill emits that request's next token (its
   first, the time to first token, unless it was preempted after it).

A request finishes when it has generated its output tokens; its blocks are freed then.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from des.errors import DesError
from des.serve.requests import Request

#: Scheduling policies of the waiting queue.
POLICIES = ("fcfs", "sjf")


@dataclass(eq=False)  # a request's state is itself: lists of them are searched by identity
class _State:
    request: Request
    admitted: int = -1            # admission order (preemption picks the latest)
    cached: int = 0               # tokens whose KV is in the cache
    generated: int = 0            # output tokens emitted
    blocks: int = 0
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0

    @property
    def target(self) -> int:
        """Tokens to have in the cache before the next one is decoded: the prompt and
        what was generated before a preemption (recomputed)."""
        return self.request.prompt_tokens + max(0, self.generated - 1) if self.generated else self.request.prompt_tokens

    @property
    def decoding(self) -> bool:
        return self.generated > 0 and self.cached >= self.target


def preempt_latest(running: list[_State], keep: _State, batch: list[_State], queue: list[_State],
                   result: ServeResult) -> int:
    """Preempt the latest admitted request of ``running`` other than ``keep`` (vLLM's
    recompute): out of the batch, its cache dropped, onto ``queue`` to be prefilled again.
    Returns the blocks freed (0 when there is no other request to preempt)."""
    victim = max((s for s in running if s is not keep), key=lambda s: s.admitted, default=None)
    if victim is None:
        return 0
    running.remove(victim)
    if victim in batch:
        batch.remove(victim)
    freed, victim.blocks, victim.cached = victim.blocks, 0, 0
    victim.preemptions += 1
    result.preemptions += 1
    queue.append(victim)
    return freed


def admit_chunks(candidates: list[_State], waiting: list[_State], running: list[_State], budget: int, room: int,
                 free: int, block_tokens: int, admitted: int) -> tuple[list, int, int, int]:
    """Prefill chunks for ``candidates`` in order, each as large as the token budget left
    and only if its KV blocks are free; a waiting request that gets one is admitted (moved
    to ``running``, numbered ``admitted``), and one that does not stops the line.

    Returns ``(batch of (state, chunk), budget, free, admitted)`` as they are after it.
    """
    batch = []
    for state in candidates:
        if budget < 1 or len(batch) >= room:
            break
        chunk = min(state.target - state.cached, budget)
        need = math.ceil((state.cached + chunk) / block_tokens) - state.blocks
        if need > free:
            if state in waiting:
                break  # head of the line waits for blocks
            continue
        free -= need
        state.blocks += need
        if state in waiting:
            waiting.remove(state)
            running.append(state)
            state.admitted = admitted
            admitted += 1
        batch.append((state, chunk))
        budget -= chunk
    return batch, budget, free, admitted


@dataclass
class ServeResult:
    """What serving the stream gave: per request, per iteration, and the counts."""

    requests: list[_State]
    iterations: list[dict] = field(default_factory=list)
    preemptions: int = 0
    kv_blocks: int = 0


def serve(requests: list[Request], cost_s: Callable, kv_blocks: int, block_tokens: int, token_budget: int = 2048,
          max_batch: int = 256, policy: str = "fcfs", progress=None, stages: int = 1) -> ServeResult:
    """Serve ``requests`` (by arrival) with ``kv_blocks`` blocks of ``block_tokens``.

    ``cost_s(prefills, decodes, decode_kv, emitting)`` gives an iteration's seconds
    (:meth:`des.study.iteration.IterationCost.cost_s`), or with ``stages`` pipeline
    stages the seconds of each stage in order. A pipeline is kept full as vLLM keeps it:
    ``stages`` virtual engines, each with its own running requests and its own batch
    loop, share the waiting queue and the KV blocks; an engine's iteration passes the
    stages in order, each stage working on one iteration at a time (first come, first
    served), and the engine schedules its next iteration when its last one has left the
    last stage (it needs the tokens sampled there). One stage is the plain loop.
    """
    if policy not in POLICIES:
        raise DesError(f"unknown scheduler {policy!r}; known: {', '.join(POLICIES)}")
    if token_budget < 1 or max_batch < 1 or stages < 1:
        raise DesError("--token-budget, --max-batch and the pipeline stages must be at least 1")
    states = [_State(r) for r in sorted(requests, key=lambda r: (r.arrival_s, r.id))]
    largest = max(r.prompt_tokens + r.output_tokens for r in requests)
    if math.ceil(largest / block_tokens) > kv_blocks:
        raise DesError(f"a request of {largest} tokens needs {math.ceil(largest / block_tokens)} KV blocks; "
                       f"the cache holds {kv_blocks}")
    pending = list(states)  # not yet arrived, by arrival
    waiting: list[_State] = []
    engines: list[list[_State]] = [[] for _ in range(stages)]  # each virtual engine's running requests
    ready = [0.0] * stages        # when each engine may schedule again
    stage_free = [0.0] * stages   # when each stage finishes what it was given
    releases: list[tuple[float, int]] = []  # blocks of finished requests, freed when they finish
    free = kv_blocks
    admitted = 0
    result = ServeResult(states, kv_blocks=kv_blocks)

    def blocks_for(tokens: int) -> int:
        return math.ceil(tokens / block_tokens)

    def next_event(now: float) -> float | None:
        """The next arrival, engine ready or release after ``now`` (``None``: none)."""
        later = [t for t in (*ready, *(r[0] for r in releases)) if t > now]
        if pending:
            later.append(pending[0].request.arrival_s)
        return min(later, default=None)

    def order(queue):
        if policy == "fcfs":
            return sorted(queue, key=lambda s: (s.request.arrival_s, s.request.id))
        return sorted(queue, key=lambda s: (s.request.prompt_tokens + s.request.output_tokens, s.request.arrival_s,
                                            s.request.id))

    done = 0
    while done < len(states):
        engine = min(range(stages), key=lambda k: (ready[k], k))
        now = ready[engine]
        running = engines[engine]
        while releases and releases[0][0] <= now:
            free += heapq.heappop(releases)[1]
        while pending and pending[0].request.arrival_s <= now:
            waiting.append(pending.pop(0))
        if not running and not waiting:
            # Idle until the next arrival, or until another engine's iteration ends.
            upcoming = next_event(now)
            ready[engine] = math.inf if upcoming is None else upcoming
            continue
        budget, batch_decodes = token_budget, []
        in_system = sum(map(len, engines)) + len(waiting)
        preempted = result.preemptions
        # 1. decodes, oldest first; a new block may preempt the latest admitted.
        for state in sorted(running, key=lambda s: s.admitted):
            if state not in running or not state.decoding or len(batch_decodes) >= max_batch or budget < 1:
                continue
            need = blocks_for(state.cached + 1) - state.blocks
            while need > free and any(s is not state for s in running):
                batched = len(batch_decodes)
                free += preempt_latest(running, state, batch_decodes, waiting, result)
                budget += batched - len(batch_decodes)  # a preempted decode gives its token back
            if need > free:
                continue
            free -= need
            state.blocks += need
            batch_decodes.append(state)
            budget -= 1
        # 2. prefill chunks: running ones first, then admissions in the policy's order.
        candidates = [s for s in sorted(running, key=lambda s: s.admitted) if not s.decoding] + order(waiting)
        batch_prefills, budget, free, admitted = admit_chunks(
            candidates, waiting, running, budget, max_batch - len(batch_decodes), free, block_tokens, admitted
        )
        if not batch_prefills and not batch_decodes:
            upcoming = next_event(now)
            if upcoming is not None:
                ready[engine] = upcoming
                continue
            raise DesError("the KV cache cannot hold the next request's first chunk beside the running ones")
        finishing = [s for s, chunk in batch_prefills if s.cached + chunk >= s.target]
        decode_kv = (sum(s.cached + 1 for s in batch_decodes) / len(batch_decodes)) if batch_decodes else 0
        cost = cost_s([(chunk, s.cached) for s, chunk in batch_prefills], len(batch_decodes),
                      int(round(decode_kv)), len(batch_decodes) + len(finishing))
        per_stage = cost if isinstance(cost, (list, tuple)) else (cost,)
        if len(per_stage) != stages:
            raise DesError(f"the iteration cost gives {len(per_stage)} stage times for a pipeline of {stages}")
        end = now
        for stage, seconds in enumerate(per_stage):
            end = max(end, stage_free[stage]) + seconds
            stage_free[stage] = end
        ready[engine] = end
        for state, chunk in batch_prefills:
            state.cached += chunk
        for state in batch_decodes:
            state.cached += 1
        for state in batch_decodes + finishing:
            state.generated += 1
            if state.first_token_s is None:
                state.first_token_s = end
            if state.generated >= state.request.output_tokens:
                state.finish_s = end
                running.remove(state)
                heapq.heappush(releases, (end, state.blocks))
                state.blocks = 0
                done += 1
                if progress is not None:
                    progress.advance()
        used = kv_blocks - free
        result.iterations.append({
            "end_s": end, "seconds": end - now, "prefill_tokens": sum(c for _s, c in batch_prefills),
            "decodes": len(batch_decodes), "batch": len(batch_prefills) + len(batch_decodes),
            "kv_blocks_used": used, "kv_occupancy": used / kv_blocks,
            "waiting": len(waiting), "in_system": in_system, "preempted": result.preemptions - preempted,
        })
    if stages > 1:
        result.iterations.sort(key=lambda it: it["end_s"])
    return result
