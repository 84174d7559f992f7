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
- :mod:`des.study.defaults` - the main job's defaults (constants only).
"""

import importlib

#: Public names and the module each lives in; imported on first use (PEP 562), so the
#: command line can read the defaults without loading the simulator.
_EXPORTS = {
    "DEFAULT_MODEL": "defaults",
    "DEFAULT_SEQ": "defaults",
    "DEFAULT_SYSTEM": "defaults",
    "DEFAULT_TP": "defaults",
    "GANTT_LAYERS": "gantt",
    "PointResult": "point",
    "PointSpec": "point",
    "PreparedPoint": "point",
    "apply_overrides": "overrides",
    "build_model": "point",
    "build_system": "point",
    "draw_point_gantt": "gantt",
    "gantt_spans": "gantt",
    "gantt_title": "gantt",
    "group_for": "point",
    "prepare_point": "point",
    "run_point": "point",
    "run_study": "script",
    "simulate_point": "point",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'des.study' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"des.study.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
