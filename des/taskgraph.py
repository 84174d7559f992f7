"""Task graphs: what a workload asks the engine to run, as pure data.

A task is either a :class:`KernelTask` (an operator on one device) or a
:class:`CollectiveTask` (bytes over a group of devices). Tasks name the tasks they
depend on and the stream they run in; tasks in one stream of one device run in the
order they were added, as on a CUDA stream, and tasks in different streams run
concurrently once their dependencies are done. Workloads build graphs; the engine runs
them; neither knows the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from des.errors import DesError


@dataclass(frozen=True)
class KernelTask:
    """An operator on one device.

    Attributes
    ----------
    name : str
        Unique task name.
    device : str
        Device node it runs on.
    operator : object, optional
        An operator the mapper can schedule (des.operators); or
    schedule : TileSchedule, optional
        an explicit schedule (tests, synthetic work).
    stream : str
        Stream on the device.
    deps : tuple of str
        Tasks that must finish first.
    category : str, optional
        Trace category; default from the operator class.
    label : str
        What the task is within its workload (``qkv``, ``w1``...), shared by the same
        operator in every layer and on every device: per-operator metrics sum by it.
    layer : int or None
        The model layer the task belongs to (1-based), ``None`` outside any layer
        (embedding, head, synthetic work): charts of a few layers select by it.
    """

    name: str
    device: str
    operator: Any = None
    schedule: Any = None
    stream: str = "compute"
    deps: tuple[str, ...] = ()
    category: str | None = None
    label: str = ""
    layer: int | None = None


@dataclass(frozen=True)
class CollectiveTask:
    """A collective over a group of devices.

    Attributes
    ----------
    name : str
        Unique task name.
    kind : str
        ``allreduce``, ``allgather``, ``reducescatter``, ``alltoall`` or ``send``.
    group : tuple of str
        Devices in rank order.
    nbytes : float
        Message size (nccl-tests convention).
    stream : str
        Stream on every device of the group.
    deps : tuple of str
        Tasks that must finish first (on any device).
    label : str
        What the task is within its workload (``allreduce``, ``allgather``...).
    layer : int or None
        The model layer the task belongs to (1-based), ``None`` outside any layer.
    matrix : tuple of tuples of float, or None
        An all-to-all's bytes from rank ``i`` to rank ``j`` (its sum is ``nbytes``);
        ``None``: uniform. A send (``group`` of two) goes from the first to the second.
    """

    name: str
    kind: str
    group: tuple[str, ...]
    nbytes: float
    stream: str = "comm"
    deps: tuple[str, ...] = ()
    label: str = ""
    layer: int | None = None
    matrix: tuple[tuple[float, ...], ...] | None = None


Task = KernelTask | CollectiveTask


@dataclass
class TaskGraph:
    """An ordered collection of tasks with dependencies.

    Tasks are kept in insertion order, which is also the order within each stream.
    """

    tasks: dict[str, Task] = field(default_factory=dict)

    def add(self, task: Task) -> str:
        """Add ``task``; its dependencies must already be in the graph. Returns its name."""
        if task.name in self.tasks:
            raise DesError(f"task graph: duplicate task name '{task.name}'")
        for dep in task.deps:
            if dep not in self.tasks:
                raise DesError(f"task graph: task '{task.name}' depends on unknown task '{dep}'")
        if isinstance(task, KernelTask) and (task.operator is None) == (task.schedule is None):
            raise DesError(f"task graph: kernel '{task.name}' needs exactly one of operator or schedule")
        self.tasks[task.name] = task
        return task.name

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks.values())

    def devices(self) -> list[str]:
        """Devices the graph uses, in first-use order."""
        seen: dict[str, None] = {}
        for task in self.tasks.values():
            for device in (task.device,) if isinstance(task, KernelTask) else task.group:
                seen.setdefault(device, None)
        return list(seen)
