"""Sweeps: many ``des run`` points from one file, run in parallel, into one table.

A sweep file (:mod:`des.sweep.spec`) holds a base scenario (the ``des run`` options)
and axes: dotted paths into the run options (``run.tp``), the system's YAML
(``system.device.compute_units``, ``system.topology.link.bandwidth_bytes_per_s``) or
the model's YAML (``model.hidden``), each with a list of values, combined as a grid or
zipped. Each point becomes a :class:`des.study.PointSpec` whose
``system_overrides``/``model_overrides`` are set on the YAML mapping before it is
built (:mod:`des.study.overrides`), so the readers check an overridden value exactly
as they check a file; :mod:`des.sweep.check` builds every point's system and model
before any runs. :mod:`des.sweep.runner` runs the points through
:func:`des.study.run_point` serially, on a local process pool or on a Dask cluster;
:mod:`des.sweep.output` writes the rows in point order and resumes an interrupted
sweep. ``des sweep`` (:mod:`des.cli.sweep`) ties them together.
"""

from des.lazy import lazy_exports

#: Public names and the module each lives in, imported on first use (:mod:`des.lazy`).
_EXPORTS = {
    "Axis": "des.sweep.spec",
    "SweepPoint": "des.sweep.spec",
    "SweepSpec": "des.sweep.spec",
    "apply_overrides": "des.study.overrides",
    "load_sweep": "des.sweep.spec",
    "parse_sweep": "des.sweep.spec",
    "point_specs": "des.sweep.check",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
