"""Serving metrics: latency percentiles, throughput and goodput, from a :class:`ServeResult`."""

from __future__ import annotations


def percentiles(values: list[float]) -> dict[str, float | None]:
    """``p50``, ``p90``, ``p99`` (nearest rank) and ``mean`` of ``values`` (``None`` if empty)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
        return ordered[index]

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "mean": sum(ordered) / len(ordered)}


def per_request(result) -> list[dict]:
    """One row per request: arrival, lengths, TTFT, TPOT, end-to-end latency, preemptions."""
    rows = []
    for s in result.requests:
        r = s.request
        ttft = s.first_token_s - r.arrival_s
        tpot = (s.finish_s - s.first_token_s) / (r.output_tokens - 1) if r.output_tokens > 1 else None
        rows.append({"id": r.id, "arrival_s": r.arrival_s, "prompt_tokens": r.prompt_tokens,
                     "output_tokens": r.output_tokens, "ttft_s": ttft, "tpot_s": tpot,
                     "e2e_s": s.finish_s - r.arrival_s, "preemptions": s.preemptions})
    return rows


def summary(result, ttft_slo_s: float | None = None, tpot_slo_s: float | None = None) -> dict:
    """Percentiles of TTFT, TPOT and end-to-end latency, throughput and goodput."""
    rows = per_request(result)
    start = min(r["arrival_s"] for r in rows)
    end = max(s.finish_s for s in result.requests)
    span = end - start if end > start else float("nan")
    tokens = sum(r["output_tokens"] for r in rows)
    good = [r for r in rows if (ttft_slo_s is None or r["ttft_s"] <= ttft_slo_s)
            and (tpot_slo_s is None or r["tpot_s"] is None or r["tpot_s"] <= tpot_slo_s)]
    occupancy = [it["kv_occupancy"] for it in result.iterations]
    return {
        "requests": len(rows),
        "ttft_s": percentiles([r["ttft_s"] for r in rows]),
        "tpot_s": percentiles([r["tpot_s"] for r in rows if r["tpot_s"] is not None]),
        "e2e_s": percentiles([r["e2e_s"] for r in rows]),
        "throughput_requests_per_s": len(rows) / span,
        "throughput_tokens_per_s": tokens / span,
        "goodput_requests_per_s": len(good) / span,
        "slo": {"ttft_s": ttft_slo_s, "tpot_s": tpot_slo_s, "met": len(good)},
        "makespan_s": span,
        "iterations": len(result.iterations),
        "preemptions": result.preemptions,
        "kv_blocks": result.kv_blocks,
        "kv_occupancy_peak": max(occupancy, default=0.0),
        "kv_occupancy_mean": sum(occupancy) / len(occupancy) if occupancy else 0.0,
        "batch_mean": sum(it["batch"] for it in result.iterations) / max(1, len(result.iterations)),
    }
