"""A sweep file: a base scenario, axes of values, and how they combine into points.

::

    base:                        # the des run options (des run's defaults otherwise)
      system: dgx-a100
      model: gpt3-1.3b
      arch: standard
      tp: 8
      seq: 128
      layers: 1
      system.collective.bandwidth_efficiency: 0.6   # a dotted path fixes a spec field
    mode: grid                   # grid (every combination, default) or zip (i-th with i-th)
    axes:
      run.tp: [2, 4, 8]
      system.device.dram_bandwidth_bytes_per_s: [1.5 TB/s, 2039 GB/s]

A ``serve`` section turns every point into a serving scenario (``des serve``: the
point's system, model, ``arch`` and ``tp`` serving a request stream)::

    base: {system: dgx-h100, model: llama-3-8b, tp: 2}
    serve: {requests: 200, prompt_tokens: 256-1024, output_tokens: 64-256}
    axes:
      serve.rate: [1, 2, 4, 8]

An axis is a dotted path: ``run.<option>`` (or the bare option: ``tp``) for a ``des run``
option, ``serve.<option>`` for a serving option (:data:`des.serve.point.SERVE_DEFAULTS`), ``system.<field>...`` for any field of the system's YAML file (the device's
fields under ``system.device``, whether the system names a preset or inlines one),
``model.<field>`` for any field of the model's YAML file. An axis replaces the base's
value of the same field. Points are numbered in order:
in a grid the last axis varies fastest. Paths of ``system``/``model`` values that name
files are read relative to the sweep file.

This module only reads and expands; building the points' systems and models (the
check that every value is of the right type) is done by :mod:`des.sweep.check`.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from des.errors import DesError
from des.specs import LIBRARIES, read_yaml

#: Ways to combine axes.
MODES = ("grid", "zip")
#: ``des run`` options a sweep may set, with their allowed values (``None``: any of
#: the type below).
RUN_CHOICES: dict[str, tuple[str, ...] | None] = {
    "system": None,
    "model": None,
    "arch": ("standard", "parallel", "kraken", "ladder"),
    "phase": ("prefill", "decode"),
    "attention": ("fused", "unfused"),
    "runtime": ("eager", "graph"),
    "comm_library": LIBRARIES,
}
#: Whole-number options, and whether they may be left out (``null``).
RUN_INTEGERS: dict[str, bool] = {"tp": False, "pp": False, "batch": False, "seq": False, "kv_len": True, "layers": True}
RUN_OPTIONS = (*RUN_CHOICES, *RUN_INTEGERS)
#: Prefixes of dotted paths.
RUN, SYSTEM, MODEL, SERVE = "run", "system", "model", "serve"
#: Bumped when the meaning of a sweep file or of its output changes.
SWEEP_FORMAT = 1

_TOP_FIELDS = ("base", "axes", "mode", "description", "serve")


@dataclass(frozen=True)
class Axis:
    """One axis: a normalised dotted path and its values, as written."""

    path: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep.

    Attributes
    ----------
    index : int
        Position in point order (0-based).
    values : tuple
        This point's value of each axis, in axis order.
    run : dict
        The ``des run`` options (base and axes), as written.
    system_overrides, model_overrides : tuple of (str, object)
        Paths within the system's and model's YAML mappings, and their values.
    serve : tuple of (str, object)
        Serving options of a serving sweep (empty otherwise).
    """

    index: int
    values: tuple[Any, ...]
    run: dict[str, Any] = field(hash=False)
    system_overrides: tuple[tuple[str, Any], ...]
    model_overrides: tuple[tuple[str, Any], ...]
    serve: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file.

    Attributes
    ----------
    source : str
        The file it came from.
    base_dir : Path
        Folder that relative system and model paths are read from.
    base : dict
        ``des run`` options and fixed field paths (normalised).
    axes : tuple of Axis
    mode : str
        ``grid`` or ``zip``.
    """

    source: str
    base_dir: Path
    base: dict[str, Any]
    axes: tuple[Axis, ...]
    mode: str

    def normalised(self) -> dict[str, Any]:
        """The spec as plain data: what its fingerprint is taken over."""
        return {
            "format": SWEEP_FORMAT,
            "base": self.base,
            "axes": [[axis.path, list(axis.values)] for axis in self.axes],
            "mode": self.mode,
        }

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`normalised`: two sweeps with the same points share it."""
        text = json.dumps(self.normalised(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def serving(self) -> bool:
        """Whether the points are serving scenarios (a ``serve`` section or axis)."""
        return any(path.startswith(f"{SERVE}.") for path in (*self.base, *self.axis_paths))

    @property
    def axis_paths(self) -> tuple[str, ...]:
        """The axes' dotted paths, in order."""
        return tuple(axis.path for axis in self.axes)

    def points(self) -> list[SweepPoint]:
        """Every point, in point order (a grid varies its last axis fastest)."""
        value_lists = [axis.values for axis in self.axes]
        if self.mode == "grid":
            combos = list(itertools.product(*value_lists))
        else:
            combos = list(zip(*value_lists, strict=True))
        return [self._point(i, combo) for i, combo in enumerate(combos)]

    def _point(self, index: int, combo: tuple[Any, ...]) -> SweepPoint:
        run: dict[str, Any] = {}
        system: list[tuple[str, Any]] = []
        model: list[tuple[str, Any]] = []
        serve: list[tuple[str, Any]] = []
        # An axis replaces the base's value of the same field.
        fixed = [(path, value) for path, value in self.base.items() if path not in self.axis_paths]
        pairs = [*fixed, *zip(self.axis_paths, combo, strict=True)]
        for path, value in pairs:
            head, _, rest = path.partition(".")
            if head == RUN:
                run[rest] = value
            elif head == SYSTEM:
                system.append((rest, value))
            elif head == SERVE:
                serve.append((rest, value))
            else:
                model.append((rest, value))
        return SweepPoint(index, tuple(combo), run, tuple(system), tuple(model), tuple(sorted(serve)))


def normalise_path(path: object, where: str) -> str:
    """``tp`` -> ``run.tp``; ``system.x`` and ``model.x`` as they are; else an error."""
    if not isinstance(path, str) or not path:
        raise DesError(f"{where}: a field path must be a non-empty string, got {path!r}")
    head, dot, rest = path.partition(".")
    if not dot:
        head, rest = RUN, path
    if any(not part for part in path.split(".")):
        raise DesError(f"{where}: field path '{path}' has an empty segment")
    if head == RUN:
        if rest not in RUN_OPTIONS:
            close = difflib.get_close_matches(rest, RUN_OPTIONS, n=1)
            hint = f" (did you mean 'run.{close[0]}'?)" if close else ""
            raise DesError(f"{where}: unknown run option '{path}'{hint}; run options: {', '.join(RUN_OPTIONS)}")
        return f"{RUN}.{rest}"
    if head in (SYSTEM, MODEL):
        return path
    if head == SERVE:
        from des.serve.point import SERVE_DEFAULTS

        if rest not in SERVE_DEFAULTS:
            close = difflib.get_close_matches(rest, SERVE_DEFAULTS, n=1)
            hint = f" (did you mean 'serve.{close[0]}'?)" if close else ""
            raise DesError(f"{where}: unknown serve option '{path}'{hint}; serve options: {', '.join(SERVE_DEFAULTS)}")
        return path
    close = difflib.get_close_matches(head, (RUN, SYSTEM, MODEL, SERVE, *RUN_OPTIONS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DesError(
        f"{where}: field path '{path}' must start with run., system., model. or serve. (or be a run option){hint}"
    )


def _check_value(path: str, value: Any, where: str) -> None:
    head, _, rest = path.partition(".")
    if head == RUN:
        check_run_value(rest, value, where)
    elif head == SERVE:
        from des.serve.point import check_serve_value

        check_serve_value(rest, value, where)


def check_run_value(option: str, value: Any, where: str) -> None:
    """Reject a ``des run`` option value of the wrong type or not among its choices."""
    if option in RUN_INTEGERS:
        if value is None and RUN_INTEGERS[option]:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DesError(f"{where}: {option} must be a whole number of at least 1, got {value!r}")
        return
    if not isinstance(value, str) or not value:
        raise DesError(f"{where}: {option} must be a string, got {value!r}")
    choices = RUN_CHOICES[option]
    if choices and value not in choices:
        raise DesError(f"{where}: {option} is {value!r}; allowed: {', '.join(choices)}")


def _resolve_file(value: Any, base_dir: Path) -> Any:
    """A system or model path relative to the sweep file, made absolute."""
    if isinstance(value, str) and (value.endswith((".yaml", ".yml")) or "/" in value or os.sep in value):
        path = Path(value)
        return str(path if path.is_absolute() else (base_dir / path).resolve())
    return value


def run_options(point: SweepPoint, base_dir: Path) -> dict[str, Any]:
    """A point's ``des run`` options with system and model paths made absolute."""
    return {k: _resolve_file(v, base_dir) if k in ("system", "model") else v for k, v in point.run.items()}


def parse_sweep(data: object, source: str, base_dir: Path) -> SweepSpec:
    """Read a parsed sweep mapping (see the module docstring).

    Raises
    ------
    DesError
        For a missing or unknown top-level field, an unknown mode, an axis that is not
        a non-empty list, zipped axes of different lengths, an unknown run option, or a
        run option value of the wrong type (naming the axis and the value).
    """
    if not isinstance(data, dict):
        raise DesError(f"{source}: expected a mapping with 'base', 'axes' and 'mode', got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(_TOP_FIELDS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], _TOP_FIELDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DesError(f"{source}: unknown field '{unknown[0]}'{hint}; known fields: {', '.join(_TOP_FIELDS)}")
    mode = data.get("mode", "grid")
    if mode not in MODES:
        raise DesError(f"{source}: field 'mode' is {mode!r}; allowed: {', '.join(MODES)}")
    raw_base = data.get("base") or {}
    if not isinstance(raw_base, dict):
        raise DesError(f"{source}: field 'base' must be a mapping of des run options, got {raw_base!r}")
    base: dict[str, Any] = {}
    for key, value in raw_base.items():
        path = normalise_path(key, f"{source}: base")
        _check_value(path, value, f"{source}: base: '{key}'")
        base[path] = value
    raw_serve = data.get("serve")
    if raw_serve is not None:
        if not isinstance(raw_serve, dict):
            raise DesError(f"{source}: field 'serve' must be a mapping of serving options, got {raw_serve!r}")
        for key, value in raw_serve.items():
            path = normalise_path(f"{SERVE}.{key}", f"{source}: serve")
            _check_value(path, value, f"{source}: serve: '{key}'")
            base[path] = value
    raw_axes = data.get("axes")
    if not isinstance(raw_axes, dict) or not raw_axes:
        raise DesError(f"{source}: field 'axes' must be a non-empty mapping of field path -> list of values")
    axes: list[Axis] = []
    for key, values in raw_axes.items():
        where = f"{source}: axis '{key}'"
        path = normalise_path(key, where)
        if any(axis.path == path for axis in axes):
            raise DesError(f"{where}: the same field as another axis")
        if not isinstance(values, list) or not values:
            raise DesError(f"{where}: expected a non-empty list of values, got {values!r}")
        for value in values:
            _check_value(path, value, where)
        axes.append(Axis(path, tuple(values)))
    if mode == "zip" and len({len(axis.values) for axis in axes}) > 1:
        sizes = ", ".join(f"{axis.path}: {len(axis.values)}" for axis in axes)
        raise DesError(f"{source}: mode zip needs axes of the same length; got {sizes}")
    return SweepSpec(source, base_dir, base, tuple(axes), mode)


def load_sweep(path: Path) -> SweepSpec:
    """Read a sweep file (see :func:`parse_sweep`); a missing file is a :class:`DesError`."""
    path = Path(path)
    return parse_sweep(read_yaml(path), str(path), path.resolve().parent)
