"""The layer order of the package docs, checked on every import of every module (ast).

A module may import modules of its own layer or of lower ones, never of a higher one;
``workloads/`` and ``topologies/`` never import the engine, the hardware or the
collectives; nothing in ``des/`` but the study layer and the command line imports
``workloads/`` or ``topologies/``. Imports inside functions count too: a lazy import
still runs against the order when it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: des's layers, lowest first (the README's "Layout"). A module belongs to the first
#: layer holding its own name or the name of a package above it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("des.units", "des.errors", "des.names", "des.spans", "des.outputs", "des.progress", "des.lazy",
     "des.gcpause"),
    ("des.specs", "des.fitted"),
    ("des.taskgraph", "des.operators", "des.runtime"),
    ("des.mapper", "des.area"),
    ("des.hardware",),
    ("des.collectives",),
    ("des.comm",),
    ("des.faults",),
    ("des.engine", "des.fastpath", "des.memo"),
    ("des.trace", "des.metrics", "des.plot", "des.plot_topology"),
    ("des.study", "des.validate", "des.calibrate"),
    ("des.sweep", "des.serve"),
    ("des.cli", "des.__main__"),
)
#: What ``workloads/`` and ``topologies/`` must never import.
SIMULATION = ("des.engine", "des.hardware", "des.collectives")
#: The only parts of des that may import the model and system descriptions.
DESCRIPTION_USERS = ("des.study", "des.cli", "des.__main__")
DESCRIPTIONS = ("workloads", "topologies")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of a des module, ``None`` outside des."""
    for index, names in enumerate(LAYERS):
        if _within(module, names):
            return index
    return None


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of this repository."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``path`` (or ``source`` as if it were
    that file), relative ones resolved."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # ``from des import engine`` imports the module des.engine.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if is_module(f"{base}.{alias.name}")]
    return found


def violations(paths: list[Path], sources: dict[Path, str] | None = None) -> list[str]:
    """Every import that runs against the order, as ``file:line: a imports b (...)``.

    ``sources`` stands in for the text of some of the files (tests of the check).
    """
    bad = []
    for path in paths:
        name = module_name(path)
        own = layer_of(name)
        for line, target in imports_of(path, (sources or {}).get(path)):
            where = f"{path.relative_to(ROOT)}:{line}: {name} imports {target}"
            if name.split(".")[0] in DESCRIPTIONS:
                if _within(target, SIMULATION):
                    bad.append(f"{where} (the descriptions never import the simulation)")
                continue
            if own is None:
                continue
            if _within(target, DESCRIPTIONS) and not _within(name, DESCRIPTION_USERS):
                bad.append(f"{where} (only the study layer and the CLI import workloads/topologies)")
            other = layer_of(target)
            if other is not None and other > own:
                bad.append(f"{where} (layer {other} above its own layer {own})")
    return bad


def package_files() -> list[Path]:
    return sorted(p for folder in ("des", "workloads", "topologies") for p in (ROOT / folder).rglob("*.py"))


def test_every_des_module_has_a_layer():
    unplaced = [module_name(p) for p in (ROOT / "des").rglob("*.py") if layer_of(module_name(p)) is None and p.name != "__init__.py"]
    assert unplaced == [], "add these modules to LAYERS (and the README's Layout)"


def test_no_import_runs_against_the_layers():
    assert violations(package_files()) == []


def test_scripts_and_benchmarks_never_import_the_cli():
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {target}"
        for folder in ("scripts", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, target in imports_of(path)
        if _within(target, ("des.cli",))
    ]
    assert bad == []


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("des.sweep.runner", "from des.cli.run import run_command\n", "layer 12 above its own layer 11"),
        ("des.engine", "from des.metrics import summarize\n", "above its own layer"),
        ("des.hardware.link", "import des.engine\n", "above its own layer"),
        ("des.metrics", "from topologies import load_system\n", "only the study layer and the CLI"),
        ("workloads.transformer", "from des.engine import Engine\n", "never import the simulation"),
        ("des.sweep.check", "from .. import cli\n", "above its own layer"),
    ],
)
def test_a_backward_import_is_caught(module, source, complaint):
    """The check fails on the imports it exists for: sweep -> cli (issue 10), and others."""
    parts = module.split(".")
    path = ROOT.joinpath(*parts[:-1], f"{parts[-1]}.py")
    found = violations([path], {path: source})
    assert len(found) == 1 and complaint in found[0], found
