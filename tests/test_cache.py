"""The schedule cache: hits, keys, corrupt files, concurrent writers, location."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_mapper_support import REPO, load_preset, with_fields

from des.fitted import FittedParams
from des.mapper import MapperParams, clear_memory_cache, schedule_for
from des.mapper import cache as cache_module
from des.operators import Attention, Matmul, Softmax

A100 = load_preset("a100")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets an empty cache directory and an empty memory cache."""
    monkeypatch.setenv("DES_CACHE_DIR", str(tmp_path / "cache"))
    clear_memory_cache()
    yield tmp_path / "cache"
    clear_memory_cache()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_hit_returns_an_identical_schedule(private_cache):
    op = Matmul(1024, 4096, 4096)
    first, info = schedule_for(A100, op)
    assert not info.cached and info.source == "search" and info.search_s > 0
    second, info = schedule_for(A100, op)
    assert info.cached and info.source == "memory" and info.search_s == 0.0
    assert second is first
    clear_memory_cache()
    third, info = schedule_for(A100, op)
    assert info.cached and info.source == "disk" and info.search_s == 0.0
    assert third == first and third.mapping == first.mapping
    assert third.replay_s(A100.dram_bandwidth_bytes_per_s) == third.standalone_s
    assert len(_files(private_cache)) == 1


def test_use_cache_false_always_searches(private_cache):
    op = Softmax(64, 64)
    schedule_for(A100, op)
    _, info = schedule_for(A100, op, use_cache=False)
    assert not info.cached and info.search_s > 0


def test_key_covers_every_device_field_dtype_params_and_version():
    op = Matmul(8, 8, 8)
    base = cache_module.cache_key(A100, op, MapperParams())
    for field in dataclasses.fields(A100):
        value = getattr(A100, field.name)
        if field.name == "fitted":  # a device's fitted efficiencies are part of what it is
            changed = FittedParams(matrix_efficiency=0.5)
        else:
            changed = value + "x" if isinstance(value, str) else value * 2
        assert cache_module.cache_key(with_fields(A100, **{field.name: changed}), op, MapperParams()) != base
    assert cache_module.cache_key(A100, Matmul(8, 8, 8, "bf16"), MapperParams()) != base
    assert cache_module.cache_key(A100, op, MapperParams(dram_efficiency=0.8)) != base
    assert cache_module.cache_key(A100, Matmul(8, 8, 8), MapperParams()) == base


def test_same_name_other_spec_is_not_reused():
    op = Matmul(1, 4096, 4096)
    fast, _ = schedule_for(A100, op)
    slow_device = with_fields(A100, dram_bandwidth_bytes_per_s=A100.dram_bandwidth_bytes_per_s / 2)
    slow, info = schedule_for(slow_device, op)
    assert not info.cached and slow.standalone_s > fast.standalone_s


def test_corrupt_file_is_rebuilt_with_one_warning(private_cache, caplog):
    op = Attention(1, 4, 256, 256, 64, causal=True)
    good, _ = schedule_for(A100, op)
    (path,) = _files(private_cache)
    for garbage in ("{not json", json.dumps({"format": 1, "key": "other"}), "", '{"format": 1}'):
        path.write_text(garbage)
        clear_memory_cache()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="des.mapper.cache"):
            rebuilt, info = schedule_for(A100, op)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "corrupt" in warnings[0].getMessage()
        assert info.source == "search" and rebuilt == good
        clear_memory_cache()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="des.mapper.cache"):
            again, info = schedule_for(A100, op)
        assert info.source == "disk" and again == good and not caplog.records


def test_unwritable_cache_dir_falls_back_to_memory(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DES_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING, logger="des.mapper.cache"):
        schedule_for(A100, Matmul(32, 32, 32))
        schedule_for(A100, Matmul(64, 32, 32))
        _, info = schedule_for(A100, Matmul(32, 32, 32))
    assert info.source == "memory"
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1


def test_default_location_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("DES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_module.cache_dir() == tmp_path / "xdg" / "des"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_module.cache_dir() == Path.home() / ".cache" / "des"


_WRITER = """
import sys
from des.mapper import cache, search_schedule
from des.operators import Matmul
from des.specs import DeviceSpec
import json
device = DeviceSpec(**json.loads(sys.argv[1]))
schedules = [search_schedule(device, Matmul(m, 64, 64)) for m in (16, 32, 48)]
keys = [cache.cache_key(device, Matmul(m, 64, 64), cache.MapperParams()) for m in (16, 32, 48)]
for _ in range(300):
    for key, schedule in zip(keys, schedules):
        cache.disk_put(key, schedule)
        loaded = cache.disk_get(key)
        assert loaded is not None and loaded == schedule, "read a torn or foreign file"
"""


def test_concurrent_writers_leave_a_valid_cache(private_cache, caplog):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    plain = dataclasses.replace(A100, fitted=None)  # the writers' device, rebuilt from JSON
    spec = json.dumps(dataclasses.asdict(plain))
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, spec], env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    files = _files(private_cache)
    assert len(files) == 3 and all(f.suffix == ".json" for f in files)  # no temp files left
    with caplog.at_level(logging.WARNING, logger="des.mapper.cache"):
        for m in (16, 32, 48):
            clear_memory_cache()
            _, info = schedule_for(plain, Matmul(m, 64, 64))
            assert info.source == "disk"
    assert not caplog.records


def test_the_mapper_version_follows_the_cost_model_source(tmp_path):
    """An edited cost model gets another version, so it never serves schedules from disk."""
    import shutil

    import des.mapper.params as params
    from des.mapper.params import MAPPER_REVISION, MAPPER_VERSION, cost_model_digest

    here = Path(params.__file__).resolve().parent
    copy = tmp_path / "mapper"
    shutil.copytree(here, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(here.parent / "operators.py", tmp_path / "operators.py")
    assert MAPPER_VERSION == f"{MAPPER_REVISION}-{cost_model_digest(copy)}"
    source = copy / "matmul.py"
    source.write_text(source.read_text() + "\n# one more line\n")
    assert cost_model_digest(copy) != cost_model_digest(here)
    operators = tmp_path / "operators.py"
    source.write_text((here / "matmul.py").read_text())
    operators.write_text(operators.read_text().replace("2.0", "2.00", 1))
    assert cost_model_digest(copy) != cost_model_digest(here)


def test_the_cache_key_and_folder_hold_the_mapper_version(monkeypatch, tmp_path):
    from des.mapper import cache
    from des.mapper.params import DEFAULT_PARAMS
    from des.operators import Matmul

    monkeypatch.setenv("DES_CACHE_DIR", str(tmp_path))
    key = cache.cache_key(A100, Matmul(64, 64, 64), DEFAULT_PARAMS)
    assert f"v{cache.MAPPER_VERSION}" in str(cache._path(key))
    cache._cache_key.cache_clear()
    monkeypatch.setattr(cache, "MAPPER_VERSION", "edited")
    try:
        assert cache.cache_key(A100, Matmul(64, 64, 64), DEFAULT_PARAMS) != key
        assert "vedited" in str(cache._path(key))
    finally:
        cache._cache_key.cache_clear()
