"""One serving scenario as a point of a sweep: options checked, run, summarised.

A sweep with a ``serve`` section (:mod:`des.sweep.spec`) runs, at each point, what
``des serve`` runs: the point's system, model, architecture and TP, and the request
stream and scheduler of :data:`SERVE_DEFAULTS` as the section and the axes set them.
Each point simulates its own iterations, so a sweep's table is the same however its
points are split between workers.
"""

from __future__ import annotations

import time
from typing import Any

from des.errors import DesError
from des.serve.scheduler import POLICIES

#: The serving options of a sweep point and their defaults (``des serve``'s).
SERVE_DEFAULTS: dict[str, Any] = {
    "rate": None, "requests": None, "prompt_tokens": "512-2048", "output_tokens": "128-512", "seed": 0,
    "arrivals": "poisson", "cv": 1.0, "scheduler": "fcfs", "max_batch": 256, "token_budget": 2048,
    "block_tokens": 16, "kv_blocks": None, "ttft_slo": None, "tpot_slo": None,
}
_POSITIVE_NUMBERS = ("rate", "cv", "ttft_slo", "tpot_slo")
_WHOLE = ("requests", "max_batch", "token_budget", "block_tokens", "kv_blocks")
_CHOICES = {"arrivals": ("poisson", "gamma"), "scheduler": POLICIES}
_OPTIONAL = ("kv_blocks", "ttft_slo", "tpot_slo")

def check_serve_value(option: str, value: Any, where: str) -> None:
    """Reject a serving option that is unknown or of the wrong type."""
    if option not in SERVE_DEFAULTS:
        raise DesError(f"{where}: unknown serve option '{option}'; serve options: {', '.join(SERVE_DEFAULTS)}")
    if value is None and option in _OPTIONAL:
        return
    if option in _POSITIVE_NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DesError(f"{where}: serve.{option} must be a positive number, got {value!r}")
    elif option in _WHOLE or option == "seed":
        least = 0 if option == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise DesError(f"{where}: serve.{option} must be a whole number of at least {least}, got {value!r}")
    elif option in _CHOICES:
        if value not in _CHOICES[option]:
            raise DesError(f"{where}: serve.{option} is {value!r}; allowed: {', '.join(_CHOICES[option])}")
    elif not isinstance(value, (int, str)) or isinstance(value, bool):
        raise DesError(f"{where}: serve.{option} must be a number of tokens or LOW-HIGH, got {value!r}")


def serve_options(pairs) -> dict[str, Any]:
    """:data:`SERVE_DEFAULTS` with ``pairs`` set; the stream needs a rate and a count."""
    options = {**SERVE_DEFAULTS, **dict(pairs)}
    if options["rate"] is None or options["requests"] is None:
        raise DesError("a serving point needs serve.rate and serve.requests")
    return options


def _cost(spec, options: dict[str, Any]):
    from des.study import build_model, build_system
    from des.study.iteration import IterationCost

    # A point's own costs: a cache shared with the points run before it in the same
    # worker would make its numbers (to the last digit of an interpolated all-reduce)
    # depend on how the sweep was split between workers.
    system = build_system(spec.system, spec.system_overrides)
    model = build_model(spec.model, spec.model_overrides)
    return IterationCost(system, model, spec.tp, spec.arch, spec.runtime, block_tokens=options["block_tokens"],
                         exact=spec.exact, devices=spec.devices, pp=spec.pp)


def serve_point(spec) -> dict[str, Any]:
    """Serve the point's stream (``spec.serve``) on its system; the ``des serve --json``
    record (without the wall time of the command) plus ``wall_s``.

    Raises
    ------
    DesError
        For a serving option the stream or the scheduler refuses, or a model that
        leaves no room for the KV cache.
    """
    from des.serve import generate, serve, summary

    start = time.perf_counter()
    options = serve_options(spec.serve)
    cost = _cost(spec, options)
    requests = generate(options["requests"], options["rate"], str(options["prompt_tokens"]),
                        str(options["output_tokens"]), options["seed"], options["arrivals"], options["cv"])
    blocks = options["kv_blocks"] if options["kv_blocks"] is not None else cost.kv_blocks(options["token_budget"])[0]
    before = (cost.simulated, cost.hits, cost.events)
    result = serve(requests, cost.cost_s, blocks, options["block_tokens"], options["token_budget"],
                   options["max_batch"], options["scheduler"], stages=spec.pp)
    record = summary(result, options["ttft_slo"], options["tpot_slo"])
    record.update(iterations_simulated=cost.simulated - before[0], iteration_cache_hits=cost.hits - before[1],
                  events_simulated=cost.events - before[2], wall_s=time.perf_counter() - start)
    return record
