"""A device's pool of compute units (SMs or CUs).

A kernel wave asks for as many units as it has tiles and takes what it can get (at
least one); a collective kernel asks for a fixed number and waits until all are free.
Requests are served first come, first served, so a large request is never starved by
later small ones. Holding units is what makes a collective slow a concurrent GEMM down
and vice versa.
"""

from __future__ import annotations

from collections import deque

import simpy


class ComputePool:
    """Compute units granted first come, first served.

    Parameters
    ----------
    env : simpy.Environment
        The simulation environment.
    units : int
        Number of compute units.
    name : str
        For messages.
    """

    def __init__(self, env: simpy.Environment, units: int, name: str) -> None:
        if units < 1:
            raise ValueError(f"{name}: need at least one compute unit, got {units}")
        self.env = env
        self.units = units
        self.free = units
        self.name = name
        self._waiters: deque[tuple[int, int, simpy.Event]] = deque()
        self._last_s = 0.0
        #: Unit-seconds of occupancy so far (for utilisation).
        self.unit_busy_s = 0.0

    def _account(self) -> None:
        now = self.env.now
        self.unit_busy_s += (self.units - self.free) * (now - self._last_s)
        self._last_s = now

    def acquire(self, wanted: int, minimum: int | None = None) -> simpy.Event:
        """Ask for up to ``wanted`` units, at least ``minimum`` (default: all wanted).

        The returned event's value is the number of units granted; give them back
        with :meth:`release`.
        """
        wanted = min(wanted, self.units)
        minimum = wanted if minimum is None else min(max(minimum, 1), wanted)
        event = self.env.event()
        if not self._waiters and self.free >= minimum:
            self._account()
            granted = min(wanted, self.free)
            self.free -= granted
            event.succeed(granted)
        else:
            self._waiters.append((wanted, minimum, event))
        return event

    def release(self, units: int) -> None:
        """Give back ``units`` and serve waiting requests in order."""
        self._account()
        self.free += units
        waiters = self._waiters
        while waiters and self.free >= waiters[0][1]:
            wanted, _minimum, event = waiters.popleft()
            granted = min(wanted, self.free)
            self.free -= granted
            event.succeed(granted)

    def busy_at(self, now_s: float) -> float:
        """Unit-seconds of occupancy up to ``now_s`` (no earlier than the last change),
        read without bringing the account forward (so the run is left bit for bit alone)."""
        return self.unit_busy_s + (self.units - self.free) * (now_s - self._last_s)

    def finish(self) -> None:
        """Bring the occupancy account up to the current time."""
        self._account()
