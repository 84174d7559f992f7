"""Serving a request stream: continuous batching over a paged KV cache, iterations simulated.

:mod:`des.serve.requests` makes or reads the stream, :mod:`des.serve.scheduler` batches
it iteration by iteration (each iteration's cost from
:class:`des.study.iteration.IterationCost`, the engine on the system), and
:mod:`des.serve.metrics` summarises it.
"""

from des.serve.metrics import per_request, percentiles, summary
from des.serve.requests import Request, generate, read_trace
from des.serve.scheduler import POLICIES, ServeResult, serve

__all__ = ["POLICIES", "Request", "ServeResult", "generate", "per_request", "percentiles", "read_trace", "serve",
           "summary"]
