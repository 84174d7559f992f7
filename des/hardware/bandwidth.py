"""A bandwidth shared fairly among concurrent transfers (processor sharing).

DRAM is the shared resource every kernel and every collective touches. When k transfers
are in flight each gets 1/k of the bandwidth; when one finishes or another starts the
shares change at once. This is modelled exactly with a virtual clock: ``virtual_bytes``
is the service each active transfer has received since the resource was created, which
grows at ``bandwidth / k``; a transfer of ``b`` bytes that starts at virtual ``v`` ends
when the virtual clock reaches ``v + b``. Transfers are kept in a heap by that finish
point, so each start or finish costs O(log k).

Completions are processed lazily: the resource is brought up to date (every completion
due by then, at the time a timer armed at the last change would have fired) whenever it
is touched - a start, a caller asking whether its transfer is done, the counters read -
and a timer is scheduled only while some caller waits on a transfer. Most transfers (a
posted write, a read finished by the time its sender looks) then cost no event at all,
and the shares, times and counters are those of a timer at every completion.
"""

from __future__ import annotations

import heapq

import simpy

from des.hardware.calls import call_later

#: Relative tolerance when deciding a transfer has finished (float round-off only).
_FINISH_RTOL = 1e-12


class Transfer:
    """A transfer in flight: ``done`` once its bytes are known to have moved.

    :meth:`SharedBandwidth.begin` makes one without an event; ``done`` may lag behind
    (completions are processed lazily), so ask :meth:`SharedBandwidth.wait`, which
    brings the resource up to date and makes an event only for a caller that must wait.
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
        self._timer: object | None = None
        self._fire = self._on_timer
        #: Transfers in flight that a caller waits on (a timer runs only while any do).
        self._waiting = 0
        # Posted writes still to start: (time, sequence, bytes).
        self._future: list[tuple[float, int, float]] = []
        #: Seconds during which at least one transfer was in flight.
        self.busy_s = 0.0
        #: Bytes moved so far.
        self.total_bytes = 0.0

    @property
    def active(self) -> int:
        """Number of transfers in flight now."""
        if self._heap or self._future:
            self._catch_up(self.env.now)
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

    def done(self, handle: Transfer) -> bool:
        """Whether ``handle``'s bytes have moved by now."""
        if not handle.done:
            self._catch_up(self.env.now)
        return handle.done

    def wait(self, handle: Transfer) -> simpy.Event | None:
        """``None`` if ``handle`` is done by now, else an event that succeeds when it is."""
        if self.done(handle):
            return None
        if handle.event is None:
            handle.event = self.env.event()
            self._waiting += 1
            self._advance()
            self._arm()
        return handle.event

    def post(self, nbytes: float) -> None:
        """Start moving ``nbytes`` that nobody waits for (a posted write): it shares the
        bandwidth like any transfer, but no completion event is made or scheduled."""
        if nbytes > 0:
            self._start(nbytes, None)

    def post_at(self, nbytes: float, when_s: float) -> None:
        """A posted write of ``nbytes`` that starts at ``when_s`` (now or later: a piece
        whose arrival its link's reservation has fixed). It starts then, as
        :meth:`post` called then would, with no event: the resource takes it up when it
        is next brought up to date."""
        if nbytes <= 0:
            return
        if when_s <= self.env.now:
            self._start(nbytes, None)
            return
        heapq.heappush(self._future, (when_s, self._seq, nbytes))
        self._seq += 1

    def settle(self) -> None:
        """Bring the resource up to now: completions due processed, the virtual clock and
        :attr:`busy_s` advanced to now."""
        self._catch_up(self.env.now)
        self._advance()

    def finish(self) -> None:
        """Process every completion still to come (the end of a run: the posted writes
        still draining count in :attr:`busy_s`)."""
        self._catch_up(float("inf"))

    def in_flight(self) -> list[tuple[float, Transfer | None]]:
        """The transfers in flight now, ``(bytes still to go, handle or None if posted)``
        each, in the order they will finish."""
        self.settle()
        return [(finish - self.virtual_bytes, handle) for finish, _seq, handle in sorted(self._heap)]

    def _start(self, nbytes: float, handle: Transfer | None) -> None:
        if self._heap or self._future:
            self._catch_up(self.env.now)
        self._advance()
        self.total_bytes += nbytes
        finish = self.virtual_bytes + nbytes
        heapq.heappush(self._heap, (finish, self._seq, handle))
        self._seq += 1
        if handle is not None and handle.event is not None:
            self._waiting += 1
        if self._waiting:
            # A new transfer slows the others, so a pending timer can only be early (it
            # then re-arms); a new timer is needed only if this transfer ends first.
            self._arm()

    def busy_at(self, now_s: float) -> float:
        """:attr:`busy_s` up to ``now_s`` (the completions due by then processed, which
        changes nothing that would not have happened anyway)."""
        self._catch_up(now_s)
        return self.busy_s + (now_s - self._last_s if self._heap else 0.0)

    def _advance(self) -> None:
        now = self.env.now
        if self._heap:
            elapsed = now - self._last_s
            self.virtual_bytes += elapsed * self.bandwidth_bytes_per_s / len(self._heap)
            self.busy_s += elapsed
        self._last_s = now

    def _catch_up(self, until_s: float) -> None:
        """Process every completion and posted start due by ``until_s`` in time order
        (a completion before a start at the same time), each completion at the time a
        timer armed at the change before it would fire (``last + ((last + dt) - last)``,
        as SimPy adds a delay to the clock)."""
        heap = self._heap
        future = self._future
        bandwidth = self.bandwidth_bytes_per_s
        while heap or future:
            last = self._last_s
            if heap:
                remaining = heap[0][0] - self.virtual_bytes
                at = last + (remaining if remaining > 0.0 else 0.0) * len(heap) / bandwidth
                when = last + (at - last)
            else:
                when = float("inf")
            if future and future[0][0] < when:
                start_s = future[0][0]
                if start_s > until_s:
                    return
                _when, seq, nbytes = heapq.heappop(future)
                if heap:
                    elapsed = start_s - last
                    self.virtual_bytes += elapsed * bandwidth / len(heap)
                    self.busy_s += elapsed
                self._last_s = start_s
                self.total_bytes += nbytes
                heapq.heappush(heap, (self.virtual_bytes + nbytes, seq, None))
                continue
            if when > until_s:
                return
            elapsed = when - last
            self.virtual_bytes += elapsed * bandwidth / len(heap)
            self.busy_s += elapsed
            self._last_s = when
            self._pop_done(when)

    def _pop_done(self, now: float) -> None:
        heap = self._heap
        bandwidth = self.bandwidth_bytes_per_s
        while heap:
            remaining = heap[0][0] - self.virtual_bytes
            # Done, up to float round-off: either within a relative tolerance, or so
            # close that the time still needed does not move the clock at all.
            if remaining > _FINISH_RTOL * heap[0][0] and now + remaining * len(heap) / bandwidth > now:
                break
            _finish, _seq, handle = heapq.heappop(heap)
            if handle is not None:
                handle.done = True
                if handle.event is not None:
                    self._waiting -= 1
                    handle.event.succeed()

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
        self._timer = call_later(self.env, at - now, self._fire)

    def _on_timer(self, timer: object) -> None:
        if timer is not self._timer:
            return  # superseded by an earlier timer
        self._timer = None
        self._timer_at = float("inf")
        self._catch_up(self.env.now)
        if self._waiting:
            self._advance()
            self._arm()
