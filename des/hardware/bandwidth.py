"""A bandwidth shared fairly among concurrent transfers (processor sharing).

DRAM is the shared resource every kernel and every collective touches. When k transfers
are in flight each gets 1/k of the bandwidth; when one finishes or another starts the
shares change at once. This is modelled exactly with a virtual clock: ``virtual_bytes``
is the service each active transfer has received since the resource was created, which
grows at ``bandwidth / k``; a transfer of ``b`` bytes that starts at virtual ``v`` ends
when the virtual clock reaches ``v + b``. Transfers are kept in a heap by that finish
point, so each start or finish costs O(log k) and one pending timer.
"""

from __future__ import annotations

import heapq

import simpy

#: Relative tolerance when deciding a transfer has finished (float round-off only).
_FINISH_RTOL = 1e-12


class Transfer:
    """A transfer in flight: ``done`` once its bytes have moved.

    :meth:`SharedBandwidth.begin` makes one without an event: a caller that finds it done
    by the time it looks needs none, and :meth:`SharedBandwidth.wait` makes the event
    only for a caller that must wait (saving an event per transfer nobody waits on).
    """

    __slots__ = ("done", "event")

    def __init__(self, event: simpy.Event | None = None) -> None:
        self.done = False
        self.event = event


class SharedBandwidth:
    """Bandwidth split equally among the transfers in flight.

    Parameters
    ----------
    env : simpy.Environment
        The simulation environment.
    bandwidth_bytes_per_s : float
        Total bandwidth.
    name : str
        For messages and statistics.
    """

    def __init__(self, env: simpy.Environment, bandwidth_bytes_per_s: float, name: str) -> None:
        if not bandwidth_bytes_per_s > 0:
            raise ValueError(f"{name}: bandwidth must be positive, got {bandwidth_bytes_per_s!r}")
        self.env = env
        self.bandwidth_bytes_per_s = float(bandwidth_bytes_per_s)
        self.name = name
        self.virtual_bytes = 0.0
        self._last_s = 0.0
        # (finish point, sequence, Transfer or None for a posted write)
        self._heap: list[tuple[float, int, Transfer | None]] = []
        self._seq = 0
        self._timer_at = float("inf")
        self._timer: simpy.Event | None = None
        self._fire = self._on_timer
        #: Seconds during which at least one transfer was in flight.
        self.busy_s = 0.0
        #: Bytes moved so far.
        self.total_bytes = 0.0

    @property
    def active(self) -> int:
        """Number of transfers in flight."""
        return len(self._heap)

    def transfer(self, nbytes: float) -> simpy.Event:
        """Start moving ``nbytes``; the returned event succeeds when they have moved."""
        event = self.env.event()
        if nbytes <= 0:
            event.succeed()
            return event
        self._start(nbytes, Transfer(event))
        return event

    def begin(self, nbytes: float) -> Transfer:
        """Start moving ``nbytes`` and return its :class:`Transfer` (no event yet)."""
        handle = Transfer()
        if nbytes <= 0:
            handle.done = True
        else:
            self._start(nbytes, handle)
        return handle

    def wait(self, handle: Transfer) -> simpy.Event | None:
        """``None`` if ``handle`` is done, else an event that succeeds when it is."""
        if handle.done:
            return None
        if handle.event is None:
            handle.event = self.env.event()
        return handle.event

    def post(self, nbytes: float) -> None:
        """Start moving ``nbytes`` that nobody waits for (a posted write): it shares the
        bandwidth like any transfer, but no completion event is made or scheduled."""
        if nbytes > 0:
            self._start(nbytes, None)

    def _start(self, nbytes: float, handle: Transfer | None) -> None:
        self._advance()
        self.total_bytes += nbytes
        finish = self.virtual_bytes + nbytes
        heapq.heappush(self._heap, (finish, self._seq, handle))
        self._seq += 1
        # A new transfer slows the others, so a pending timer can only be early (it
        # then re-arms); a new timer is needed only if this transfer ends first.
        self._arm()

    def busy_at(self, now_s: float) -> float:
        """:attr:`busy_s` up to ``now_s`` (no earlier than the last change), read without
        advancing the virtual clock (so the run is left bit for bit alone)."""
        return self.busy_s + (now_s - self._last_s if self._heap else 0.0)

    def _advance(self) -> None:
        now = self.env.now
        if self._heap:
            elapsed = now - self._last_s
            self.virtual_bytes += elapsed * self.bandwidth_bytes_per_s / len(self._heap)
            self.busy_s += elapsed
        self._last_s = now

    def _arm(self) -> None:
        heap = self._heap
        if not heap:
            return
        now = self.env.now
        remaining = heap[0][0] - self.virtual_bytes
        at = now + (remaining if remaining > 0.0 else 0.0) * len(heap) / self.bandwidth_bytes_per_s
        if at >= self._timer_at:
            return
        self._timer_at = at
        timer = self._timer = self.env.timeout(at - now)
        timer.callbacks.append(self._fire)

    def _on_timer(self, timer: simpy.Event) -> None:
        if timer is not self._timer:
            return  # superseded by an earlier timer
        self._timer = None
        self._timer_at = float("inf")
        self._advance()
        heap = self._heap
        now = self.env.now
        while heap:
            remaining = heap[0][0] - self.virtual_bytes
            # Done, up to float round-off: either within a relative tolerance, or so
            # close that the time still needed does not move the clock at all.
            if remaining > _FINISH_RTOL * heap[0][0] and now + remaining * len(heap) / self.bandwidth_bytes_per_s > now:
                break
            _finish, _seq, handle = heapq.heappop(heap)
            if handle is not None:
                handle.done = True
                if handle.event is not None:
                    handle.event.succeed()
        self._arm()
