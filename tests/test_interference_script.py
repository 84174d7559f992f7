"""scripts/interference_study.py: a GEMM and an all-reduce beside each other."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "interference_study.py"


def _module():
    spec = importlib.util.spec_from_file_location("interference_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contention_never_speeds_either_up(capsys):
    assert _module().main(["--seqs", "128", "--runtime", "graph", "--tp", "4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[1] for row in rows] == ["qkv", "out-proj", "ffn-up", "ffn-down"]
    for row in rows:
        gemm_slowdown, ar_slowdown = float(row[4].rstrip("x")), float(row[7].rstrip("x"))
        assert gemm_slowdown >= 1.0 and ar_slowdown >= 1.0


def test_a_bad_system_is_one_line(capsys):
    assert _module().main(["--system", "no-such-system"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("interference_study: error:") and "Traceback" not in err
