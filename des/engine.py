"""Run a task graph on a simulated system.

Build phases are kept apart: construct (environment, devices, links from the system
spec), elaborate (one process per task, started in graph order so runs are
deterministic), run (until the event queue is empty), collect (results and trace).

A kernel task runs its tile schedule round by round: each round asks the device for
the compute units it has tiles left for and takes what it can get, runs that many tiles
(one wave's compute time) while their DRAM bytes move through the device's shared DRAM
bandwidth, and ends when both are done; a kernel of T tiles given g units takes
ceil(T / g) rounds, as a GPU dispatches blocks to SMs as they free up. So a kernel beside a collective, or
beside another kernel, is slowed exactly as much as the shared units and bandwidth
dictate. ``execution="tile"`` runs every tile as its own process instead (slower to
simulate; agrees with waves when the kernel is alone).

``faults=`` (:mod:`des.faults`) runs the graph on a degraded system: faults before the
run change a copy of the system the engine is built on (and a run they break stops
before it starts); faults at a time are applied between stretches of the simulation
(``env.run(until=...)``), before anything else that happens at that instant, and a
fault that leaves unfinished work unable to finish stops the run there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from des.collectives import CollectiveResult, buffer_bytes
from des.comm import build, check_library, plan_call
from des.errors import DesError, DoesNotFitError
from des.faults import Fault, FaultError, FaultPlan, task_list
from des.gcpause import collector_paused
from des.hardware import Network
from des.memo import Isolation, Memo, replay_or_run, replayable, replayed
from des.names import CATEGORY_OF_CLASS, LAUNCH, OTHER
from des.runtime import LaunchFn
from des.spans import Trace
from des.specs import DeviceSpec, SystemSpec
from des.taskgraph import CollectiveTask, KernelTask, TaskGraph
from des.units import format_bytes, format_seconds

logger = logging.getLogger(__name__)

ScheduleFn = Callable[[DeviceSpec, Any], Any]


@dataclass
class RunResult:
    """What a run produced.

    Attributes
    ----------
    latency_s : float
        Time from the start until the last task finished.
    task_start_s, task_end_s : dict
        Start and end of each task by name.
    collectives : dict
        :class:`CollectiveResult` of each collective task by name.
    trace : Trace
        Every span recorded.
    network : Network
        The live network after the run (link and DRAM statistics).
    events : int
        SimPy events scheduled during the run (the simulation's cost measure).
    faults_applied : tuple of Fault
        The faults that took effect: all those before the run, and those at a time
        reached before the work was done.
    """

    latency_s: float
    task_start_s: dict[str, float]
    task_end_s: dict[str, float]
    collectives: dict[str, CollectiveResult]
    trace: Trace
    network: Network = field(repr=False)
    events: int = 0
    faults_applied: tuple[Fault, ...] = ()
    #: Whether the run was written out from a few simulated layers (:mod:`des.fastpath`).
    fast_path: bool = False
    #: SimPy events actually simulated (``events`` is what the full run would schedule).
    events_simulated: int = 0


class Engine:
    """Executes one task graph on one system.

    Parameters
    ----------
    system : SystemSpec
        Devices, links and collective parameters.
    trace : Trace, optional
        Where spans go (a new enabled trace by default).
    schedule_fn : callable, optional
        ``schedule_fn(device_spec, operator) -> TileSchedule`` for kernel tasks given
        as operators; :func:`mapper_schedule` (the cached mapper) by default.
    launch_fn : callable, optional
        ``launch_fn(schedule, device_spec) -> seconds`` of launch overhead per kernel
        (the runtime profile); none by default.
    execution : {"wave", "tile"}
        Granularity of kernel execution.
    faults : sequence of Fault, optional
        Links or nodes that fail or slow down, before the run or at a time
        (:func:`des.faults.parse_faults`).
    progress : des.progress.Progress, optional
        Told the run's work before it starts (one unit per kernel, one per piece a
        collective sends) and each unit as it is done: a progress bar. It never
        changes what is simulated.
    max_piece_transfers : int, optional
        The most piece transfers one collective may simulate
        (:func:`des.hardware.network.default_max_piece_transfers` by default); a call
        that needs more is refused before the run.
    comm_library : str, optional
        The communication library that plans every collective (:mod:`des.comm`);
        default: the system's ``collective.library``.
    comm_launch_s : float, optional
        Per-call cost of the caller for the library's calls (a CUDA-graph runtime's
        kernel launch); default: the library's host-timed eager figure.
    algorithm : str, optional
        Forces every collective's algorithm (``des collective --algorithm``; see
        :func:`simulate_collective`); default: the library's choice.
    fast_path : bool
        Simulate a graph of repeated layers only until it repeats exactly and write the
        rest out (:mod:`des.fastpath`); graphs that do not repeat, and runs with timed
        faults, are simulated in full either way.
    memo : Memo or bool
        Replay kernels and collectives that run alone from a recording of their first
        such run (:mod:`des.memo`): ``True`` (default) a memo of this engine's own,
        ``False`` none, or a :class:`~des.memo.Memo` shared by engines of one
        configuration. Off when faults fall during the run.
    """

    def __init__(
        self,
        system: SystemSpec,
        trace: Trace | None = None,
        schedule_fn: ScheduleFn | None = None,
        launch_fn: LaunchFn | None = None,
        execution: str = "wave",
        faults: Sequence[Fault] = (),
        progress: Any = None,
        max_piece_transfers: int | None = None,
        comm_library: str | None = None,
        comm_launch_s: float | None = None,
        algorithm: str | None = None,
        fast_path: bool = False,
        memo: Memo | bool = True,
    ) -> None:
        if execution not in ("wave", "tile"):
            raise DesError(f"execution must be 'wave' or 'tile', got {execution!r}")
        self._given = dict(system=system, schedule_fn=schedule_fn, launch_fn=launch_fn, execution=execution,
                           faults=tuple(faults), max_piece_transfers=max_piece_transfers, comm_library=comm_library,
                           comm_launch_s=comm_launch_s, algorithm=algorithm)
        self.fast_path = fast_path
        self._on_task_end: Callable[[str], None] | None = None
        system_given = system
        self.fault_plan = FaultPlan(system, faults)
        self.system = system = self.fault_plan.system
        self.env = simpy.Environment()
        self.progress = progress
        self.network = Network(self.env, system, max_piece_transfers, progress)
        self.trace = trace if trace is not None else Trace()
        self.schedule_fn = schedule_fn if schedule_fn is not None else mapper_schedule
        self.launch_fn = launch_fn
        self.execution = execution
        self.comm_library = check_library(comm_library) if comm_library is not None else None
        self.comm_launch_s = comm_launch_s
        self.algorithm = algorithm
        if memo is True:
            memo = Memo()
        if memo is not False and not self.fault_plan.timed:
            memo.bind(system_given, (tuple(faults), comm_library, comm_launch_s, algorithm, execution,
                                                max_piece_transfers))
            self.memo = memo
        else:
            self.memo = None
        self._given["memo"] = self.memo if self.memo is not None else False

    # ----------------------------------------------------------------- elaborate

    def _check(self, graph: TaskGraph) -> None:
        devices = self.network.devices
        for task in graph:
            members = (task.device,) if isinstance(task, KernelTask) else task.group
            for device in members:
                if device not in devices:
                    known = ", ".join(devices)
                    raise DesError(f"task '{task.name}' uses '{device}', which is not a device of '{self.system.name}' ({known})")

    def run(self, graph: TaskGraph, on_task_end: Callable[[str], None] | None = None) -> RunResult:
        """Simulate ``graph`` and return its :class:`RunResult`.

        ``on_task_end(name)``, if given, is called at the instant each task ends (the
        fast path reads the counters at layer boundaries with it); it must not change
        the simulation. Python's cyclic collector is paused meanwhile
        (:func:`~des.gcpause.collector_paused`).

        Raises :class:`DesError` before the run for tasks on unknown devices or
        collectives whose ring cannot be formed, and after it if some tasks could
        never start (naming what they waited on).
        """
        with collector_paused():
            return self._run(graph, on_task_end)

    def _run(self, graph: TaskGraph, on_task_end: Callable[[str], None] | None) -> RunResult:
        self._on_task_end = on_task_end
        self._check_faults(graph)
        self._check(graph)
        attempted = 0
        if self.fast_path and not self.fault_plan.timed:
            from des.fastpath import run_repeated

            forks = []

            def make_engine(trace):
                # Each run starts from this engine's memo, so their event counts compare.
                memo = self.memo.fork() if self.memo is not None else False
                forks.append(memo)
                return Engine(trace=trace, **{**self._given, "memo": memo})

            fields, simulated = run_repeated(graph, make_engine, self.trace)
            for memo in forks:
                if memo is not False:
                    self.memo.absorb(memo)
            if fields is not None:
                if self.progress is not None:
                    self.progress.start(1)
                    self.progress.advance()
                return RunResult(**fields, faults_applied=self.fault_plan.before, fast_path=True,
                                 events_simulated=simulated)
            attempted = simulated
        env = self.env
        # Each task's process is the event its dependants wait on (it fires as it ends).
        done: dict[str, simpy.Process] = {}
        starts: dict[str, float] = {}
        ends: dict[str, float] = {}
        collectives: dict[str, CollectiveResult] = {}
        last_in_stream: dict[tuple[str, str], str] = {}
        stream_tasks: dict[tuple[str, str], list[str]] = {}
        all_waits: dict[str, list[str]] = {}
        prepared = []
        for task in graph:
            if isinstance(task, KernelTask):
                streams = [(task.device, task.stream)]
                work = self._prepare_kernel(task)
            else:
                streams = [(device, task.stream) for device in task.group]
                # The library plans the call (algorithm, protocol, channels), then it is built.
                plan = plan_call(
                    self.network, task.kind, task.group, task.nbytes, self.system.collective,
                    self.comm_library, self.comm_launch_s, self.algorithm,
                )
                work = build(plan, self.network, task.kind, task.group, task.nbytes, self.trace, task.name, task.stream,
                             matrix=task.matrix)
            waits = list(task.deps)
            for key in streams:
                previous = last_in_stream.get(key)
                if previous is not None and previous not in waits:
                    waits.append(previous)
                last_in_stream[key] = task.name
                stream_tasks.setdefault(key, []).append(task.name)
            all_waits[task.name] = waits
            prepared.append((task, work, waits))
        self._isolation = (Isolation(self.network, graph, all_waits, stream_tasks, ends)
                           if self.memo is not None else None)
        if self.progress is not None:
            self.progress.start(
                sum(1 if isinstance(task, KernelTask) else work.piece_transfers for task, work, _waits in prepared)
            )
        for task, work, waits in prepared:
            done[task.name] = env.process(self._task(task, work, [done[name] for name in waits], starts, ends, collectives))
        applied = self._simulate(graph, ends)
        unfinished = [name for name in graph.tasks if name not in ends]
        if unfinished:
            raise DesError(self._stuck_message(graph, unfinished, ends))
        for device in self.network.devices.values():
            device.compute.finish()
            device.dram.finish()
        return RunResult(
            latency_s=max(ends.values(), default=0.0),
            task_start_s=starts,
            task_end_s=ends,
            collectives=collectives,
            trace=self.trace,
            network=self.network,
            events=_events_scheduled(env),
            faults_applied=self.fault_plan.before + applied,
            events_simulated=_events_scheduled(env) + attempted,
        )

    # ----------------------------------------------------------------- faults

    def _uses(self, graph: TaskGraph, names) -> dict[str, tuple[str, ...]]:
        return {
            name: (task.device,) if isinstance(task, KernelTask) else tuple(task.group)
            for name in names
            for task in (graph.tasks[name],)
        }

    def _check_faults(self, graph: TaskGraph) -> None:
        """Before the run: no task on a failed device, no collective cut apart."""
        if self.fault_plan.before:
            self.fault_plan.check_before(self._uses(graph, graph.tasks))

    def _simulate(self, graph: TaskGraph, ends: dict[str, float]) -> tuple[Fault, ...]:
        """``env.run()`` through the timed faults (:class:`~des.faults.FaultPlan`); return those applied."""
        env = self.env
        total = len(graph.tasks)
        try:
            applied = self.fault_plan.run_through(
                env,
                self.network,
                lambda: len(ends) == total,
                lambda: self._uses(graph, [name for name in graph.tasks if name not in ends]),
            )
            env.run()
        except FaultError:
            raise
        except DesError as exc:
            unfinished = [name for name in graph.tasks if name not in ends]
            raise DesError(f"{exc}; the run stopped at {format_seconds(env.now)} with {task_list(unfinished)} unfinished") from None
        return applied

    @staticmethod
    def _stuck_message(graph: TaskGraph, unfinished: list[str], ends: dict[str, float]) -> str:
        parts = []
        for name in unfinished[:5]:
            waiting = [dep for dep in graph.tasks[name].deps if dep not in ends]
            parts.append(f"'{name}' (waiting on {', '.join(waiting) or 'resources that never freed'})")
        more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
        return f"the run stopped with {len(unfinished)} unfinished tasks: " + "; ".join(parts) + more

    # ----------------------------------------------------------------- kernels

    def _prepare_kernel(self, task: KernelTask):
        spec = self.network.devices[task.device].spec
        schedule = task.schedule if task.schedule is not None else self.schedule_fn(spec, task.operator)
        launch_s = self.launch_fn(schedule, spec) if self.launch_fn is not None else 0.0
        return schedule, launch_s

    def _task(self, task, work, waits, starts, ends, collectives):
        env = self.env
        for event in waits:
            if not event.processed:
                yield event
        starts[task.name] = env.now
        if isinstance(task, CollectiveTask):
            # Inline, so the ranks ask for their compute units at this instant,
            # ahead of kernels that became ready later in graph order.
            result = yield from self._collective(task, work)
            plan = work.plan
            collectives[task.name] = dataclasses.replace(
                result,
                library=plan.library,
                protocol=plan.protocol if plan.protocol is not None else result.protocol,
                channels=result.channels or plan.channels,
            )
        else:
            yield from self._kernel(task, *work)
            if self.progress is not None:
                self.progress.advance()
        ends[task.name] = env.now
        if self._on_task_end is not None:
            self._on_task_end(task.name)

    def _collective(self, task: CollectiveTask, work):
        """Run a collective, or replay it when it runs alone and has run alone before
        (:mod:`des.memo`)."""
        if self.memo is None:
            return (yield from work.run())
        trace = self.trace
        base = ("collective", task.kind, tuple(task.group), task.stream, task.matrix, trace.enabled, trace.links,
                trace.steps)
        plan = work.plan
        family = (*base, plan.library, plan.algorithm, plan.protocol, plan.channels, work.piece_transfers)
        return (yield from replay_or_run(self.memo, self._isolation, trace, self.progress, (*base, task.nbytes),
                                         task.name, tuple(task.group), work.run, work.piece_transfers,
                                         family=family, size=task.nbytes))

    def _kernel(self, task: KernelTask, schedule, launch_s: float):
        env = self.env
        device = self.network.devices[task.device]
        trace = self.trace
        category = task.category or CATEGORY_OF_CLASS.get(schedule.op_class, OTHER)
        key = ("kernel", id(device.spec), id(schedule), self.execution)
        group = (task.device,)
        if launch_s > 0:
            launch_start = env.now
            recording = replayable(self.memo, self._isolation, key, task.name, group)
            if recording is not None:
                # Alone already: nothing can reach the device before it ends, so the
                # launch and the recorded run are one wait, ending where the launch then
                # the run would to the last bit (the difference of two close times is
                # exact), as on every other rank.
                start = launch_start + launch_s
                yield env.timeout((start + recording.duration_s) - env.now)
                replayed(self.memo, self.network, key, group, recording)
                trace.add(task.device, task.stream, f"launch {task.name}", LAUNCH, launch_start, start)
                trace.add(task.device, task.stream, task.name, category, start, env.now)
                return
            yield env.timeout(launch_s)
            trace.add(task.device, task.stream, f"launch {task.name}", LAUNCH, launch_start, env.now)
        start = env.now
        if self.memo is None:
            yield from self._rounds(device, schedule)
        else:
            # A kernel alone on its device runs the same every time (des.memo).
            yield from replay_or_run(self.memo, self._isolation, trace, None, key, task.name, group,
                                     lambda: self._rounds(device, schedule), refs=(device.spec, schedule))
        trace.add(task.device, task.stream, task.name, category, start, env.now)

    def _rounds(self, device, schedule):
        """Generator: the kernel's tile groups on the device's units and DRAM."""
        env = self.env
        compute = device.compute
        dram = device.dram
        for group in schedule.groups:
            if self.execution == "tile":
                for _ in range(group.count):
                    yield from self._tiles(device, group)
                continue
            # The group's tiles are dispatched as units free up, not wave by wave behind
            # a barrier: each round runs as many of the remaining tiles as the units
            # granted now (one tile per unit, one wave's compute time), so a kernel of
            # T tiles on g units takes ceil(T / g) rounds. A one-wave kernel that loses
            # a few units needs a second, nearly empty round (the tail effect, ~2x); a
            # many-wave kernel loses only the share of units it lacks.
            left = group.count * group.units
            per_tile_bytes = group.dram_bytes / group.units
            while left > 0:
                granted = yield compute.acquire(min(group.units, left), 1)
                tiles = min(granted, left)
                moved = dram.begin(per_tile_bytes * tiles)
                yield env.timeout(group.compute_s)
                if not moved.done:
                    waited = dram.wait(moved)
                    if waited is not None:
                        yield waited
                compute.release(granted)
                left -= tiles

    def _tiles(self, device, group):
        """One wave as one process per tile, each on one unit with its share of bytes."""
        env = self.env
        per_tile_bytes = group.dram_bytes / group.units

        def tile():
            yield device.compute.acquire(1)
            moved = device.dram.begin(per_tile_bytes)
            yield env.timeout(group.compute_s)
            if not moved.done:
                waited = device.dram.wait(moved)
                if waited is not None:
                    yield waited
            device.compute.release(1)

        yield simpy.AllOf(env, [env.process(tile()) for _ in range(group.units)])


def _events_scheduled(env: simpy.Environment) -> int:
    """Events scheduled so far: SimPy numbers every scheduled event from one counter.

    ``_eid`` is SimPy's private counter (stable since SimPy 3); reading it draws one
    number, which only shifts later ids and never changes the order of events.
    """
    counter = getattr(env, "_eid", None)
    return next(counter) if counter is not None else 0


def events_so_far(env: simpy.Environment) -> int:
    """Events scheduled so far, read without drawing a number from SimPy's counter (its
    ``repr`` is ``count(N)``), so a run that reads it is the same to the event."""
    counter = getattr(env, "_eid", None)
    if counter is None:
        return 0
    text = repr(counter)
    return int(text[text.index("(") + 1:-1])


def mapper_schedule(device: DeviceSpec, operator: Any):
    """Schedule function backed by the mapper (cached): the default for operator kernels."""
    from des.mapper import schedule_for

    return schedule_for(device, operator)[0]


def simulate(system: SystemSpec, graph: TaskGraph, **options) -> RunResult:
    """Build an :class:`Engine` for ``system`` with ``options`` and run ``graph``."""
    return Engine(system, **options).run(graph)


def check_buffers(system: SystemSpec, kind: str, group: Sequence[str], nbytes: float) -> None:
    """Refuse a collective whose send and receive buffers do not fit a rank's DRAM.

    Raises
    ------
    DoesNotFitError
        Naming the device, the bytes needed (:func:`~des.collectives.buffer_bytes`)
        and its capacity.
    """
    need = buffer_bytes(kind, nbytes, len(group))
    for device in group:
        spec = system.device_spec(device)
        if need > spec.dram_capacity_bytes:
            raise DoesNotFitError(
                f"{kind} of {format_bytes(nbytes)} needs {format_bytes(need)} of send and receive buffers "
                f"per rank, more than the {format_bytes(spec.dram_capacity_bytes)} of {device} ({spec.name})"
            )


def simulate_collective(
    system: SystemSpec,
    kind: str,
    group: tuple[str, ...],
    nbytes: float,
    trace: Trace | None = None,
    algorithm: str | None = None,
    faults: Sequence[Fault] = (),
    **options: Any,
) -> CollectiveResult:
    """Run one collective alone on an idle system and return its result.

    ``algorithm`` forces the algorithm (``ring``, ``hierarchical`` or ``auto`` for the
    ``fixed`` library; ``ring``, ``tree`` or ``nvls`` for ``nccl``); ``faults`` are
    applied as by :class:`Engine`, and ``options`` (``progress``,
    ``max_piece_transfers``, ``comm_library``, ``comm_launch_s``) passed to it.
    """
    check_buffers(system, kind, group, nbytes)
    graph = TaskGraph()
    graph.add(CollectiveTask(kind, kind, tuple(group), nbytes))
    return Engine(system, trace=trace, faults=faults, algorithm=algorithm, **options).run(graph).collectives[kind]
