"""Checking a sweep before it runs: every point's system and model built once.

:func:`point_specs` turns a parsed sweep into one :class:`~des.study.PointSpec` per
point and builds each distinct (file, overrides) system and model, so an unknown field,
a value of the wrong type or an unknown preset stops the sweep before any point runs,
naming the base, the axis and value, or the point. Failures a point meets only when it
runs (a model that does not fit, decode without ``kv_len``) are that point's result.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from des.errors import DesError
from des.study import PointSpec, build_model, build_system
from des.sweep.spec import SweepPoint, SweepSpec, run_options


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class _Checker:
    """Builds systems and models once per distinct (file, overrides)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def check(self, spec: PointSpec) -> None:
        system_key = _key("system", spec.system, spec.system_overrides)
        if system_key not in self.seen:
            build_system(spec.system, spec.system_overrides)
            self.seen.add(system_key)
        model_key = _key("model", spec.model, spec.model_overrides)
        if model_key not in self.seen:
            build_model(spec.model, spec.model_overrides)
            self.seen.add(model_key)


def point_spec(point: SweepPoint, sweep: SweepSpec) -> PointSpec:
    """The :class:`PointSpec` of one sweep point (file paths relative to the sweep file)."""
    return PointSpec(
        **run_options(point, sweep.base_dir),
        system_overrides=tuple(point.system_overrides),
        model_overrides=tuple(point.model_overrides),
        serve=tuple(point.serve),
    )


def _base_point(sweep: SweepSpec, position: int | None = None, value: Any = None) -> SweepPoint:
    """The base scenario alone, or with one axis set to ``value``."""
    axes = () if position is None else (dataclasses.replace(sweep.axes[position], values=(value,)),)
    return SweepSpec(sweep.source, sweep.base_dir, sweep.base, axes, "grid").points()[0]


def point_specs(sweep: SweepSpec) -> list[PointSpec]:
    """Every point's :class:`PointSpec`, each system and model built once.

    Checks the base alone, then each axis value on the base alone (so an error names the
    axis and the value), then every point (naming the point and its axis values).

    Raises
    ------
    DesError
        For an unknown field (with the nearest name), a value of the wrong type, an
        unknown preset or a combination that cannot be built.
    """
    checker = _Checker()
    try:
        checker.check(point_spec(_base_point(sweep), sweep))
    except DesError as exc:
        raise DesError(f"{sweep.source}: base: {exc}") from None
    for position, axis in enumerate(sweep.axes):
        for value in axis.values:
            try:
                checker.check(point_spec(_base_point(sweep, position, value), sweep))
            except DesError as exc:
                raise DesError(f"{sweep.source}: axis '{axis.path}' value {value!r}: {exc}") from None
    specs = []
    for point in sweep.points():
        spec = point_spec(point, sweep)
        try:
            checker.check(spec)
            if sweep.serving:
                from des.serve.point import serve_options

                serve_options(spec.serve)  # a stream needs its rate and its count
        except DesError as exc:
            values = ", ".join(f"{p}={v!r}" for p, v in zip(sweep.axis_paths, point.values, strict=True))
            raise DesError(f"{sweep.source}: point {point.index} ({values}): {exc}") from None
        specs.append(spec)
    return specs
