"""The study layer: one point of a study, built, checked, simulated and summarised.

Everything that runs a model on a system goes through here: ``des run``
(:mod:`des.cli.run`), the sweeps (:mod:`des.sweep`), the scenario scripts in
``scripts/`` and the benchmarks. It is the one place below the command line that
imports ``topologies/`` and ``workloads/``.

- :mod:`des.study.point` - :class:`PointSpec` (what to run where), :func:`prepare_point`
  (build the system and model, the workload, check memory), :func:`simulate_point`
  (engine and metrics into one record), :func:`run_point` (both);
  :func:`build_system` / :func:`build_model` (a preset, a file or a built spec, with
  sweep overrides set on the YAML first).
- :mod:`des.study.overrides` - set fields of a parsed YAML mapping by dotted path.
- :mod:`des.study.gantt` - the Gantt chart of a point (two layers of a whole model).
- :mod:`des.study.script` - the ``main`` wrapper of a scenario script.
"""

from des.study.gantt import GANTT_LAYERS, draw_point_gantt, gantt_spans, gantt_title
from des.study.overrides import apply_overrides
from des.study.point import (
    DEFAULT_MODEL,
    DEFAULT_SEQ,
    DEFAULT_SYSTEM,
    DEFAULT_TP,
    PointResult,
    PointSpec,
    PreparedPoint,
    build_model,
    build_system,
    group_for,
    prepare_point,
    run_point,
    simulate_point,
)
from des.study.script import run_study

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SEQ",
    "DEFAULT_SYSTEM",
    "DEFAULT_TP",
    "GANTT_LAYERS",
    "PointResult",
    "PointSpec",
    "PreparedPoint",
    "apply_overrides",
    "build_model",
    "build_system",
    "draw_point_gantt",
    "gantt_spans",
    "gantt_title",
    "group_for",
    "prepare_point",
    "run_point",
    "run_study",
    "simulate_point",
]
