"""Names shared across the layers: sort order, trace rows and categories, operator classes.

Several layers must agree on a few names: the trace writes span categories that the
metrics and the Gantt chart read back, the hardware names link rows that the metrics and
the chart must recognise, the mapper tags schedules with operator classes that the
runtime prices and the task graph maps to categories. They live here, once, below every
module that uses them (this module imports nothing of des).

Concepts
--------
natural order
    Names sort with their digit runs as numbers: ``gpu2`` before ``gpu10``.
link row
    The trace resource of a link direction from node A to node B is ``->B`` on A
    (:func:`link_resource`); :data:`LINK_PREFIX` tells such a row from a stream.
operator class
    What kind of kernel a schedule is (:data:`OP_CLASSES`): launch overheads and trace
    categories are given per class.
span category
    One of the closed set :data:`SPAN_CATEGORIES`.
"""

from __future__ import annotations

import re
from typing import Any

#: Resource-name prefix of a link direction's trace row (``->gpu1``).
LINK_PREFIX = "->"


def link_resource(dst: object) -> str:
    """The trace row of the link towards ``dst``: ``->dst``."""
    return f"{LINK_PREFIX}{dst}"


def is_link_resource(resource: str) -> bool:
    """Whether ``resource`` is a link row (see :func:`link_resource`)."""
    return resource.startswith(LINK_PREFIX)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: object) -> tuple[Any, ...]:
    """Sort key under which ``gpu2`` comes before ``gpu10``.

    Text and digit runs alternate in the key (text first, possibly empty), so any two
    keys compare part by part without mixing types.
    """
    parts = _DIGITS.split(str(name))
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


# --------------------------------------------------------------------------- operator classes

#: Operator classes (:attr:`des.mapper.schedule.TileSchedule.op_class`): what a runtime
#: profile prices and what a kernel's trace category follows from.
OP_CLASSES = ("matmul", "softmax", "layernorm", "gelu", "elementwise", "attention")

# --------------------------------------------------------------------------- span categories

GEMM = "gemm"
ATTENTION = "attention"
NORM = "norm"
ELEMENTWISE = "elementwise"
LM_HEAD = "lm_head"
#: A whole collective on one device.
COLLECTIVE = "collective"
#: One step of a ring collective on one device.
COLLECTIVE_STEP = "collective-step"
#: One chunk crossing one link direction.
LINK = "link"
#: DRAM traffic detail.
DRAM = "dram"
#: A kernel's launch overhead.
LAUNCH = "launch"
#: A kernel whose operator class has no category of its own (synthetic schedules).
OTHER = "other"

#: Every span category, in legend order: a closed set charts and metrics rely on.
SPAN_CATEGORIES = (GEMM, ATTENTION, NORM, ELEMENTWISE, LM_HEAD, COLLECTIVE, COLLECTIVE_STEP, LINK, DRAM, LAUNCH, OTHER)

#: Span categories of compute kernels (:data:`SPAN_CATEGORIES` minus communication,
#: launch and resource detail).
KERNEL_CATEGORIES = (NORM, GEMM, ATTENTION, ELEMENTWISE, LM_HEAD, OTHER)

#: Trace category of a kernel by its operator class (a task may name its own).
CATEGORY_OF_CLASS = {
    "matmul": GEMM,
    "attention": ATTENTION,
    "softmax": ATTENTION,
    "layernorm": NORM,
    "gelu": ELEMENTWISE,
    "elementwise": ELEMENTWISE,
}
