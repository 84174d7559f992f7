"""Fixtures shared by the test modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def load_script():
    """Factory: ``load_script("kraken_ttft")`` imports ``scripts/kraken_ttft.py`` as a module.

    The module is registered in ``sys.modules`` (as ``NAME_under_test``; dataclasses
    need it there) until the test module that loaded it is done.
    """
    loaded: list[str] = []

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        loaded.append(spec.name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
