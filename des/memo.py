"""Replaying a kernel or a collective that runs alone.

A kernel or a collective that starts on idle resources, with nothing else able to touch
them before it ends, runs the same way every time: the same tiles on the same compute
units, the same pieces over the same links, only shifted in time. A tensor-parallel
model runs the same kernels and the same all-reduce every layer, each rank's stream
waiting on each, and a serving run runs them again for every iteration of the same
token count. :class:`Memo` simulates such a run once, records what it did (its
duration, its result, its spans, and what it added to every counter of the links, DRAM
and compute units it touched) and replays it at any later start as one timeout.

A task is *alone* (:meth:`Isolation.alone`) when, at its start (a kernel's after its
launch),

- every device it runs on has all its compute units free with nobody waiting, and no
  DRAM transfer in flight; for a collective, every link of the group's routes is free;
- on every stream of those devices the first unfinished task is the task itself or
  waits on it (directly or through other tasks), so nothing else can start there
  before it ends;
- no unfinished collective of other devices could use one of those links (their routes
  are disjoint, or the memo stays out).

A recording is kept only if the links it changed are among the group's routes and it
left nothing in flight but posted DRAM writes (a replay posts what was left of them).
Everything a run depends on beyond its own arguments - the system, the library and
its launch cost, a forced algorithm, the piece budget, the execution mode - is fixed
per engine configuration, and a memo serves one configuration only (:meth:`Memo.bind`);
the trace's settings are part of a collective's key. Timed faults turn it off (the
engine's choice).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

from des.errors import DesError
from des.taskgraph import CollectiveTask


@dataclasses.dataclass
class Recording:
    """What one call did, relative to its start."""

    duration_s: float
    result: Any
    start_s: float
    spans: tuple
    counters: dict
    piece_transfers: int
    #: Posted DRAM writes still draining at the end, by position in the group (bytes left).
    tails: dict = dataclasses.field(default_factory=dict)


def _counters(network, group, links) -> dict:
    """The counters of ``group``'s devices, by position in the group (a kernel's
    recording replays on any device of its spec), and of ``links``."""
    out = {}
    for index, rank in enumerate(group):
        device = network.devices[rank]
        # Both keep their accounts lazily: bring them to now first.
        device.compute._account()
        device.dram.settle()
        out[("compute", index)] = device.compute.unit_busy_s
        out[("dram", index)] = device.dram.busy_s
        out[("dram_bytes", index)] = device.dram.total_bytes
    for key in links:
        link = network.links[key]
        out[("link_busy", key)] = link.busy_s
        out[("link_bytes", key)] = link.bytes_sent
    return out


class Memo:
    """Recordings of kernels and collectives that ran alone, for one engine configuration.

    Parameters
    ----------
    interpolate : bool
        Also replay an untraced collective of a size not recorded yet when two recordings
        of its plan (algorithm, protocol, channels, pieces) bracket it on a stretch that
        a third recording showed affine (:class:`_Family`); off by default (``des
        serve`` turns it on unless ``--exact``).

    Attributes
    ----------
    recorded, replayed : dict
        Runs simulated and stored, and runs replayed from a recording, by what ran
        (``kernel``, ``collective``).
    """

    def __init__(self, interpolate: bool = False) -> None:
        self.interpolate = interpolate
        self._families: dict[tuple, _Family] = {}
        self.interpolated = 0
        #: Keys being recorded now: ``key -> (environment, event at the recording's end)``.
        self.pending: dict[tuple, tuple] = {}
        self._config: tuple | None = None
        self._system: Any = None
        self._store: dict[tuple, Recording | None] = {}
        self._refs: dict[int, Any] = {}
        self.recorded = {"kernel": 0, "collective": 0}
        self.replayed = {"kernel": 0, "collective": 0}

    def bind(self, system, config: tuple) -> None:
        """Tie the memo to ``system`` (the object itself) and ``config``; a memo already
        tied to another refuses."""
        if self._system is None:
            self._system, self._config = system, config
        elif self._system is not system or self._config != config:
            raise DesError("a memo serves one system and engine configuration; make one per configuration")

    def fork(self) -> Memo:
        """A memo of the same configuration starting from this one's recordings (runs
        compared with each other, as the fast path's, start from the same state)."""
        other = Memo(self.interpolate)
        other._system, other._config = self._system, self._config
        other._store, other._refs = dict(self._store), dict(self._refs)
        other._families = {key: family.copy() for key, family in self._families.items()}
        return other

    def absorb(self, other: Memo) -> None:
        """Take the recordings ``other`` (a fork) made and this memo lacks."""
        for key, recording in other._store.items():
            if key not in self._store:
                self.put(key, recording)
        self._refs.update(other._refs)
        for kind, count in other.replayed.items():
            self.replayed[kind] += count
        for key, family in other._families.items():
            mine = self._families.setdefault(key, _Family())
            for size, recording in family.recordings.items():
                mine.learn(size, recording)
        self.interpolated += other.interpolated

    def estimate(self, family: tuple, size: float) -> Recording | None:
        """A recording of a call of ``family`` (its key less its size) and ``size``
        interpolated on a stretch verified affine, or ``None``."""
        found = self._families.get(family)
        return found.estimate(size) if found is not None else None

    def learn(self, family: tuple, size: float, recording: Recording) -> None:
        """Add a recording of ``family`` at ``size`` to its stretches."""
        self._families.setdefault(family, _Family()).learn(size, recording)

    def get(self, key: tuple) -> Recording | None | bool:
        """The recording of ``key``, ``None`` if it may not be replayed, ``False`` if unknown."""
        return self._store.get(key, False)

    def put(self, key: tuple, recording: Recording | None, refs: tuple = ()) -> None:
        """Store ``recording`` (``None``: never replay this key); ``refs``: objects whose
        ids the key holds, kept alive. ``key[0]`` is what ran."""
        self._store[key] = recording
        for obj in refs:
            self._refs[id(obj)] = obj
        if recording is not None:
            self.recorded[key[0]] += 1


#: Relative tolerance of the collinearity that shows a stretch of sizes affine.
AFFINE_RTOL = 1e-9


def _lerp_recording(a: Recording, b: Recording, weight: float, size: float) -> Recording:
    def mix(x: float, y: float) -> float:
        return x + weight * (y - x)

    result = a.result
    if result is not None:
        result = dataclasses.replace(result, nbytes=size,
                                     bytes_sent_per_rank=mix(a.result.bytes_sent_per_rank, b.result.bytes_sent_per_rank))
    counters = {k: mix(a.counters[k], b.counters[k]) for k in a.counters}
    tails = {i: tuple(mix(x, y) for x, y in zip(a.tails[i], b.tails[i], strict=True)) for i in a.tails}
    return Recording(mix(a.duration_s, b.duration_s), result, a.start_s, (), counters, a.piece_transfers, tails)


def _alike(a: Recording, b: Recording) -> bool:
    return (a.counters.keys() == b.counters.keys() and a.tails.keys() == b.tails.keys()
            and all(len(a.tails[i]) == len(b.tails[i]) for i in a.tails))


def _collinear(x: tuple, y: tuple, z: tuple) -> bool:
    """Whether the middle recording lies on the line through the outer two, in every number."""
    (sx, rx), (sy, ry), (sz, rz) = x, y, z
    if not (_alike(rx, ry) and _alike(ry, rz)):
        return False
    line = _lerp_recording(rx, rz, (sy - sx) / (sz - sx), sy)

    def near(u: float, v: float, scale: float) -> bool:
        return abs(u - v) <= AFFINE_RTOL * max(abs(scale), 1e-300)

    if not near(line.duration_s, ry.duration_s, ry.duration_s):
        return False
    if not all(near(line.counters[k], ry.counters[k], max(abs(rx.counters[k]), abs(rz.counters[k]))) for k in ry.counters):
        return False
    return all(near(u, v, max(ry.tails[i])) for i in ry.tails for u, v in zip(line.tails[i], ry.tails[i], strict=True))


class _Family:
    """Recordings of one collective plan at several sizes, and the stretches between
    neighbouring sizes shown affine.

    Within one plan a call alone is a fixed pattern of pieces whose hold times grow in
    proportion to the size; while the order of events stays the same its duration and
    every counter are affine in the size, and where the order changes they bend. A
    stretch between two neighbouring recordings counts as affine once three neighbours
    in a row lie on one line (to :data:`AFFINE_RTOL`, in duration, every counter and
    every draining write); only then are sizes inside it interpolated. A bend between
    two recordings leaves their stretch unverified, so sizes there are simulated, and
    each new recording is checked with its neighbours again. (Interpolating across
    unverified stretches of under 2 % moved mean TTFT by 1e-3 and p99 TTFT by 6 % on
    300 Llama-3-70B requests: the schedule is that sensitive, so it is not done.)
    """

    def __init__(self) -> None:
        self.recordings: dict[float, Recording] = {}
        self.sizes: list[float] = []
        self.affine: set[tuple[float, float]] = set()

    def copy(self) -> _Family:
        other = _Family()
        other.recordings, other.sizes, other.affine = dict(self.recordings), list(self.sizes), set(self.affine)
        return other

    def learn(self, size: float, recording: Recording) -> None:
        if size in self.recordings:
            return
        index = bisect.bisect(self.sizes, size)
        self.sizes.insert(index, size)
        self.recordings[size] = recording
        sizes = self.sizes
        for first in range(max(0, index - 2), min(index, len(sizes) - 3) + 1):
            x, y, z = sizes[first:first + 3]
            if _collinear((x, self.recordings[x]), (y, self.recordings[y]), (z, self.recordings[z])):
                self.affine.update(((x, y), (y, z)))

    def estimate(self, size: float) -> Recording | None:
        index = bisect.bisect(self.sizes, size)
        if index == 0 or index == len(self.sizes):
            return None
        lo, hi = self.sizes[index - 1], self.sizes[index]
        if (lo, hi) not in self.affine:
            return None
        return _lerp_recording(self.recordings[lo], self.recordings[hi], (size - lo) / (hi - lo), size)


class Isolation:
    """The checks of :meth:`alone` for the tasks of one graph on one engine's network.

    Parameters
    ----------
    network : Network
        The live network.
    graph : TaskGraph
        The graph being run (its order is topological).
    waits : dict
        Every task's full list of what it waits on (dependencies and stream predecessors).
    streams : dict
        ``(device, stream) -> [task names in order]``.
    ends : dict
        The engine's record of finished tasks (read live).
    """

    def __init__(self, network, graph, waits: dict, streams: dict, ends: dict) -> None:
        self.network = network
        self.order = {name: i for i, name in enumerate(graph.tasks)}
        self.waits = waits
        self.ends = ends
        self.streams_of: dict[str, list[list[str]]] = {}
        for (device, _stream), names in streams.items():
            self.streams_of.setdefault(device, []).append(names)
        self._first = {id(names): 0 for lists in self.streams_of.values() for names in lists}
        self._links: dict[tuple, frozenset] = {}
        self._collectives = [task for task in graph if isinstance(task, CollectiveTask)]
        self._conflicts: dict[tuple, list[str]] = {}
        self._ancestry: dict[str, list] = {}

    def links(self, group: tuple) -> frozenset:
        """Keys of every link on a route between two members of ``group``."""
        found = self._links.get(group)
        if found is None:
            keys = set()
            for a in group:
                for b in group:
                    if a != b:
                        keys.update((link.src, link.dst) for link in self.network.route(a, b))
            found = self._links[group] = frozenset(keys)
        return found

    def _conflicting(self, group: tuple) -> list[str]:
        """Collectives of ranks outside ``group`` whose routes share a link with it."""
        found = self._conflicts.get(group)
        if found is None:
            mine, members = self.links(group), set(group)
            found = [task.name for task in self._collectives
                     if not members.intersection(task.group) and mine & self.links(tuple(task.group))]
            self._conflicts[group] = found
        return found

    def _waits_on(self, name: str, target: str) -> bool:
        """Whether task ``name`` waits, directly or through others, on ``target``.

        Each task asked about keeps what was found of its ancestry: every ancestor of
        order at least ``floor`` (the graph order is topological, so a path to one runs
        through higher orders only), and those found but not yet followed.
        """
        order = self.order
        entry = self._ancestry.get(name)
        if entry is None:
            entry = self._ancestry[name] = [order[name], set(), [name]]
        floor, found, unexpanded = entry
        if target in found:
            return True
        level = order[target]
        if level >= floor:
            return False
        stack = [n for n in unexpanded if order[n] >= level]
        entry[2] = [n for n in unexpanded if order[n] < level]
        waits = self.waits
        while stack:
            for dep in waits[stack.pop()]:
                if dep not in found:
                    found.add(dep)
                    if order[dep] >= level:
                        stack.append(dep)
                    else:
                        entry[2].append(dep)
        entry[0] = level
        return target in found

    def alone(self, name: str, group: tuple) -> bool:
        """Whether task ``name`` (starting now on ``group``) runs alone (module docstring)."""
        network, ends = self.network, self.ends
        now = network.env.now
        for rank in group:
            device = network.devices[rank]
            compute = device.compute
            if compute.free != compute.units or compute._waiters or device.dram.active:
                return False
            for names in self.streams_of[rank]:
                index = self._first[id(names)]
                while index < len(names) and names[index] in ends:
                    index += 1
                self._first[id(names)] = index
                if index < len(names) and names[index] != name and not self._waits_on(names[index], name):
                    return False
        if len(group) == 1:
            return True  # a kernel: no links
        links = network.links
        for key in self.links(group):
            link = links[key]
            if link.free_at_s > now or not link.up:
                return False
        return not any(other not in ends and not self._waits_on(other, name) for other in self._conflicting(group))

    def snapshot(self, group: tuple) -> dict:
        """The counters a call on ``group`` may change."""
        return _counters(self.network, group, self.links(group))

    def tails(self, group: tuple) -> dict | None:
        """What a call on ``group`` that just ended left in flight on its ranks: the bytes
        still to go of each posted DRAM write (nobody waits on those), by position in the
        group; ``None``
        if anything else is left (a transfer waited on, compute units held)."""
        out = {}
        for index, rank in enumerate(group):
            device = self.network.devices[rank]
            if device.compute.free != device.compute.units:
                return None
            left = []
            for remaining, handle in device.dram.in_flight():
                if handle is not None:
                    return None
                left.append(remaining)
            if left:
                out[index] = tuple(left)
        return out

    def changed_links_outside(self, group: tuple, before: dict) -> bool:
        """Whether some link off ``group``'s routes moved bytes since ``before`` (all links)."""
        inside = self.links(group)
        return any(link.bytes_sent != before.get(key, 0.0)
                   for key, link in self.network.links.items() if key not in inside)


def replay_or_run(memo: Memo, isolation: Isolation, trace, progress, key: tuple, name: str, group: tuple,
                  body, pieces: int = 0, refs: tuple = (), family: tuple | None = None, size: float = 0.0):
    """Generator: run ``body()`` (a generator) for task ``name`` on ``group`` (``key[0]``
    says what it is: ``kernel`` or ``collective``), recording it
    if it runs alone, or replay its recording; returns what ``body`` returns (a
    recording's result shifted to now).

    ``pieces`` is what the body tells ``progress``; ``refs`` are objects whose ``id`` is
    in ``key`` (kept alive with the memo so that the ids stay theirs). A collective gives
    its ``family`` (the key less its size, plus its plan) and ``size``: a memo that
    interpolates may then replay an estimate (:meth:`Memo.estimate`) of an untraced call.
    """
    recording = memo.get(key)
    if recording is None or not isolation.alone(name, group):
        return (yield from body())
    network = isolation.network
    env = network.env
    start = env.now
    interpolating = memo.interpolate and family is not None and not trace.enabled
    if recording is False and interpolating:
        recording = memo.estimate(family, size) or False
        if recording is not False:
            memo.interpolated += 1
    pending = memo.pending.get(key)
    if recording is False and pending is not None and pending[0] is env and key[0] == "kernel":
        # The same kernel is being recorded alone on another device: it ends as that one
        # does, shifted by the later start (an isolated kernel's recording always holds).
        yield pending[1]
        recording = memo.get(key)
        left = (start + recording.duration_s) - env.now  # exact: ends where a replay would
        if left > 0:
            yield env.timeout(left)
        replayed(memo, network, key, group, recording)
        return recording.result
    if recording is not False:
        yield env.timeout(recording.duration_s)
        replayed(memo, network, key, group, recording)
        if trace.enabled and recording.spans:
            trace.spans.extend(span._replace(name=name + span.name, start_s=span.start_s + start,
                                             end_s=span.end_s + start) for span in recording.spans)
        if progress is not None and recording.piece_transfers:
            progress.advance(recording.piece_transfers)
        result = recording.result
        if result is None:
            return None
        return dataclasses.replace(result, start_s=result.start_s + start - recording.start_s, end_s=env.now)
    before = isolation.snapshot(group)
    link_bytes = {k: link.bytes_sent for k, link in network.links.items()} if len(group) > 1 else None
    first_span = len(trace.spans)
    done = memo.pending[key] = (env, env.event())
    try:
        result = yield from body()
    finally:
        del memo.pending[key]
    tails = isolation.tails(group)
    if tails is None or (link_bytes is not None and isolation.changed_links_outside(group, link_bytes)):
        memo.put(key, None, refs)
        done[1].succeed()
        return result
    after = isolation.snapshot(group)
    spans = tuple(
        span._replace(name=span.name[len(name):], start_s=span.start_s - start, end_s=span.end_s - start)
        for span in trace.spans[first_span:]
        if span.name == name or span.name.startswith(name + " ")
    )
    counters = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    recording = Recording(env.now - start, result, start, spans, counters, pieces, tails)
    memo.put(key, recording, refs)
    if interpolating:
        memo.learn(family, size, recording)
    done[1].succeed()
    return result


def replayable(memo: Memo | None, isolation: Isolation | None, key: tuple, name: str, group: tuple) -> Recording | None:
    """The recording of ``key`` if task ``name`` on ``group`` is alone now, else ``None``."""
    if memo is None:
        return None
    recording = memo.get(key)
    if not recording or not isolation.alone(name, group):
        return None
    return recording


def replayed(memo: Memo, network, key: tuple, group: tuple, recording: Recording) -> None:
    """Count a replay of ``recording`` that has just ended and apply what it did."""
    memo.replayed[key[0]] += 1
    _apply(network, group, recording)


def _apply(network, group: tuple, recording: Recording) -> None:
    """Add what the recorded run did to the counters, and post what it left draining."""
    devices = network.devices
    for (what, where), delta in recording.counters.items():
        if what == "compute":
            devices[group[where]].compute.unit_busy_s += delta
        elif what == "dram":
            devices[group[where]].dram.busy_s += delta
        elif what == "dram_bytes":
            devices[group[where]].dram.total_bytes += delta
        elif what == "link_busy":
            network.links[where].busy_s += delta
        else:
            network.links[where].bytes_sent += delta
    for index, left in recording.tails.items():
        dram = devices[group[index]].dram
        for nbytes in left:
            dram.post(nbytes)
        dram.total_bytes -= sum(left)  # counted in the recording's delta already
