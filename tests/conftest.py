"""Fixtures shared by the test modules."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
#: The suite's own schedule cache, so tests never fill (or read) the user's ~/.cache/des.
_CACHE: list[str] = []


def pytest_configure(config):
    """Point ``DES_CACHE_DIR`` at a fresh temporary folder for the whole run (subprocesses too)."""
    folder = tempfile.mkdtemp(prefix="des-test-cache-")
    _CACHE.append(folder)
    os.environ["DES_CACHE_DIR"] = folder


def pytest_unconfigure(config):
    for folder in _CACHE:
        shutil.rmtree(folder, ignore_errors=True)


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
