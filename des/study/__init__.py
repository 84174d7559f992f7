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

from des.lazy import lazy_exports

#: Public names and the module each lives in, imported on first use (:mod:`des.lazy`), so
#: the command line can read the defaults without loading the simulator.
_EXPORTS = {
    "DEFAULT_MODEL": "des.study.defaults",
    "DEFAULT_SEQ": "des.study.defaults",
    "DEFAULT_SYSTEM": "des.study.defaults",
    "DEFAULT_TP": "des.study.defaults",
    "GANTT_LAYERS": "des.study.gantt",
    "PointResult": "des.study.point",
    "PointSpec": "des.study.point",
    "PreparedPoint": "des.study.point",
    "apply_overrides": "des.study.overrides",
    "build_model": "des.study.point",
    "build_system": "des.study.point",
    "draw_point_gantt": "des.study.gantt",
    "gantt_spans": "des.study.gantt",
    "gantt_title": "des.study.gantt",
    "group_for": "des.study.point",
    "prepare_point": "des.study.point",
    "run_point": "des.study.point",
    "run_study": "des.study.script",
    "simulate_point": "des.study.point",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
