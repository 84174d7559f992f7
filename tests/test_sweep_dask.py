"""``des sweep --scheduler``: the same rows on a Dask cluster as on the local process pool.

The test starts a scheduler and two single-threaded workers on 127.0.0.1 (random free
ports, no dashboards) as subprocesses and stops them afterwards.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from des.cli import main
from des.sweep.output import WALL_COLUMN

distributed = pytest.importorskip("distributed", reason="the 'distributed' package is not installed")

ROOT = Path(__file__).resolve().parents[1]
#: Seconds to wait for the scheduler and both workers to come up.
START_TIMEOUT_S = 20
#: Seconds a process gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Address of a scheduler with two registered workers (one process, one thread each)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env["DES_CACHE_DIR"] = str(tmp_path_factory.mktemp("des-cache"))
    logs = tmp_path_factory.mktemp("dask-logs")
    common = {"cwd": ROOT, "env": env, "stdin": subprocess.DEVNULL}
    processes = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        stdout=(logs / "scheduler.log").open("w"), stderr=subprocess.STDOUT, **common)]
    try:
        for i in range(2):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                 "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--death-timeout", str(START_TIMEOUT_S), "--name", f"w{i}"],
                stdout=(logs / f"worker{i}.log").open("w"), stderr=subprocess.STDOUT, **common))
        with distributed.Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address
    finally:
        stop(processes[1:])
        stop(processes[:1])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != WALL_COLUMN} for row in csv.DictReader(handle)]


def test_dask_cluster_gives_the_process_pool_rows(cluster, tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "base": {"system": "hgx-a100-4", "model": "gpt3-1.3b", "layers": 1, "tp": 4},
        "axes": {"seq": [64, 128, 256], "arch": ["standard", "kraken"],
                 "system.device.compute_units": [54, 108]},
    }))
    local, remote = tmp_path / "local.csv", tmp_path / "dask.csv"
    assert main(["sweep", str(sweep), "--out", str(local), "--jobs", "2", "--quiet"]) == 0
    start = time.monotonic()
    code = main(["sweep", str(sweep), "--out", str(remote), "--scheduler", cluster, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"on {cluster}" in out
    assert time.monotonic() - start < 30
    assert rows(remote) == rows(local)
    assert len(rows(remote)) == 12 and all(r["status"] == "ok" for r in rows(remote))
    # Both workers ran points and kept their mapper schedules in memory between them.
    with distributed.Client(cluster, timeout=START_TIMEOUT_S, set_as_default=False) as client:
        cached = client.run(lambda: len(__import__("des.mapper.cache", fromlist=["_MEMORY"])._MEMORY))
    assert len(cached) == 2 and all(size > 0 for size in cached.values()), cached


def test_scheduler_without_workers_is_a_clear_error(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        with distributed.Client(address, timeout=START_TIMEOUT_S, set_as_default=False):
            pass
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"base": {"model": "gpt3-1.3b", "layers": 1}, "axes": {"tp": [2]}}))
        old = tmp_path / "o.csv"
        old.write_bytes(b"an earlier result\n")
        code = main(["sweep", str(sweep), "--out", str(old), "--scheduler", address,
                     "--timeout-s", "1", "--quiet"])
        _, err = capsys.readouterr()
        assert code == 2
        assert "has no worker after 1 s" in err and err.count("\n") == 1
        assert old.read_bytes() == b"an earlier result\n", "a sweep that never started leaves the file as it was"
        assert not (tmp_path / "o.csv.sweep.json").exists()
    finally:
        stop([scheduler])


def test_losing_every_worker_mid_sweep_is_reported_and_resumable(tmp_path, capsys):
    """A worker killed after the first row: the sweep stops (no hang), keeps its rows, resumes."""
    import threading

    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    common = {"cwd": ROOT, "env": env, "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **common)
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nworkers", "1",
         "--nthreads", "1", "--no-nanny", "--no-dashboard", "--death-timeout", str(START_TIMEOUT_S)], **common)
    try:
        with distributed.Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=START_TIMEOUT_S)
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({
            "base": {"system": "hgx-a100-4", "model": "gpt3-1.3b", "layers": 2, "tp": 4},
            "axes": {"seq": [64, 128, 256, 512, 1024, 2048], "arch": ["standard", "kraken"]},
        }))
        out = tmp_path / "out.csv"

        def kill_after_first_row() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if out.exists() and len(out.read_text().splitlines()) >= 2:
                    worker.kill()
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_after_first_row)
        killer.start()
        start = time.monotonic()
        code = main(["sweep", str(sweep), "--out", str(out), "--scheduler", address, "--stall-timeout-s", "3", "--quiet"])
        killer.join()
        _, err = capsys.readouterr()
        assert code == 2, err
        assert "no point finished" in err and "--resume" in err and "Traceback" not in err, err
        assert time.monotonic() - start < 45
        kept = rows(out)
        assert 1 <= len(kept) < 12
        # The rows kept are finished points; --resume runs the rest (here on local processes).
        code = main(["sweep", str(sweep), "--out", str(out), "--resume", "--jobs", "1", "--quiet"])
        stdout, err = capsys.readouterr()
        assert code == 0, err
        assert f"{len(kept)} already done" in stdout
        full = tmp_path / "full.csv"
        assert main(["sweep", str(sweep), "--out", str(full), "--jobs", "1", "--quiet"]) == 0
        assert rows(out) == rows(full)
    finally:
        stop([worker])
        stop([scheduler])
