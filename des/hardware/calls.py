"""Callbacks at a later time, for the resources' own bookkeeping.

A link hop, a DRAM timer or an arrival counted at a switch only needs a function run at
a time; nobody yields it. :func:`call_later` puts such a call on SimPy's queue exactly
where ``env.timeout(delay)`` with that callback would go (same time, priority and
sequence number, so the order of events is unchanged), without building a Timeout: an
object of two slots instead of an event's value, delay and environment.

It writes SimPy's queue directly (``_queue``, ``_eid``, ``_now``: SimPy 4's scheduler,
stable since SimPy 3; the engine already reads ``_eid`` for its event counts).
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush

import simpy
from simpy.events import NORMAL


class _Call:
    """What SimPy's step needs of an event: callbacks to run, and that it succeeded."""

    __slots__ = ("callbacks", "_ok")

    def __init__(self, callback: Callable[[object], None]) -> None:
        self.callbacks = [callback]
        self._ok = True


def call_later(env: simpy.Environment, delay_s: float, callback: Callable[[object], None]) -> object:
    """Run ``callback(call)`` ``delay_s`` from now, as a timeout's callback would run;
    return the call (to tell a superseded one apart)."""
    call = _Call(callback)
    heappush(env._queue, (env._now + delay_s, NORMAL, next(env._eid), call))
    return call
