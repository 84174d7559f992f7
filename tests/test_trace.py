"""Span records and their Chrome/Perfetto trace JSON."""

from __future__ import annotations

import json

import simpy

from des.collectives import RingCollective
from des.hardware import Network
from des.trace import Span, Trace, chrome_trace, write_chrome_trace
from topologies import load_system

SPANS = [
    Span("gpu10", "compute", "gemm k", "gemm", 1e-6, 3e-6),
    Span("gpu2", "->nvswitch", "chunk", "link", 0.0, 1e-6),
    Span("gpu2", "compute", "norm", "norm", 0.0, 2e-6),
    Span("nvswitch", "->gpu2", "chunk", "link", 1e-6, 2e-6),
]


def run_dgx_allreduce(trace: Trace) -> None:
    system = load_system("dgx-a100")
    env = simpy.Environment()
    net = Network(env, system)
    coll = RingCollective(net, "allreduce", system.devices, 8 * 2**20, system.collective, trace)
    env.process(coll.run())
    env.run()


def test_trace_records_and_disables():
    trace = Trace()
    trace.add("gpu0", "compute", "k", "gemm", 0.0, 1.0)
    assert trace.spans == [Span("gpu0", "compute", "k", "gemm", 0.0, 1.0)]
    assert (len(trace), trace.end_s()) == (1, 1.0)
    off = Trace(enabled=False)
    off.add("gpu0", "compute", "k", "gemm", 0.0, 1.0)
    assert len(off) == 0 and bool(off) and not off.links
    assert not Trace(links=False).links


def test_chrome_trace_has_the_required_fields():
    events = chrome_trace(SPANS)["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(SPANS)
    for event in complete:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid"} <= set(event)
        assert event["dur"] >= 0
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"
    }
    # pid = device (natural order: gpu2 before gpu10), tid = resource; all named.
    # Times are in microseconds (rounded here to hide float noise of the conversion).
    assert list(processes.values()) == ["gpu2", "gpu10", "nvswitch"]
    named = [
        (
            processes[e["pid"]],
            threads[(e["pid"], e["tid"])],
            e["name"],
            round(e["ts"], 9),
            round(e["dur"], 9),
        )
        for e in complete
    ]
    assert named == [
        ("gpu2", "->nvswitch", "chunk", 0.0, 1.0),
        ("gpu2", "compute", "norm", 0.0, 2.0),
        ("gpu10", "compute", "gemm k", 1.0, 2.0),
        ("nvswitch", "->gpu2", "chunk", 1.0, 1.0),
    ]


def test_chrome_trace_of_a_collective_loads_as_json(tmp_path):
    trace = Trace()
    run_dgx_allreduce(trace)
    path = tmp_path / "trace.json"
    write_chrome_trace(trace, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    events = data["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(trace)
    assert {e["cat"] for e in complete} == {"collective", "collective-step", "link"}
    pids = {e["pid"] for e in complete}
    assert pids == {e["pid"] for e in events if e["name"] == "process_name"}
    assert all(isinstance(e["ts"], float) and e["dur"] >= 0 for e in complete)


def test_two_runs_write_byte_identical_traces(tmp_path):
    paths = []
    for index in range(2):
        trace = Trace()
        run_dgx_allreduce(trace)
        path = tmp_path / f"run{index}.json"
        write_chrome_trace(trace, path)
        paths.append(path)
    first, second = (p.read_bytes() for p in paths)
    assert first == second
    assert len(first) > 1000
