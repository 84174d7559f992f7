"""des serve: request streams, the continuous-batching scheduler, its metrics and the command."""

from __future__ import annotations

import json

import pytest
from helpers import call

from des.errors import DesError
from des.serve import Request, generate, per_request, percentiles, read_trace, serve, summary

PREFILL_S_PER_TOKEN, DECODE_S, FIXED_S = 1e-5, 2e-3, 1e-3


def linear_cost(prefills, decodes, decode_kv, emitting):
    """A hand-checkable iteration cost: a fixed part, per prompt token, per decode."""
    return FIXED_S + PREFILL_S_PER_TOKEN * sum(chunk for chunk, _past in prefills) + (DECODE_S if decodes else 0.0)


def test_one_request_is_its_prefill_then_its_decodes():
    result = serve([Request(0, 0.0, 1000, 5)], linear_cost, kv_blocks=1000, block_tokens=16)
    (row,) = per_request(result)
    prefill = FIXED_S + 1000 * PREFILL_S_PER_TOKEN
    decode = FIXED_S + DECODE_S
    assert row["ttft_s"] == pytest.approx(prefill)
    assert row["e2e_s"] == pytest.approx(prefill + 4 * decode)
    assert row["tpot_s"] == pytest.approx(decode)


def test_a_long_prompt_is_chunked_by_the_token_budget():
    result = serve([Request(0, 0.0, 5000, 2)], linear_cost, kv_blocks=1000, block_tokens=16, token_budget=2048)
    assert [it["prefill_tokens"] for it in result.iterations] == [2048, 2048, 904, 0]
    assert per_request(result)[0]["ttft_s"] == pytest.approx(3 * FIXED_S + 5000 * PREFILL_S_PER_TOKEN)


def test_decodes_and_prefill_chunks_share_an_iteration():
    requests = [Request(0, 0.0, 100, 10), Request(1, 0.0015, 300, 3)]
    result = serve(requests, linear_cost, kv_blocks=1000, block_tokens=16)
    mixed = [it for it in result.iterations if it["decodes"] and it["prefill_tokens"]]
    assert mixed and mixed[0]["prefill_tokens"] == 300


def test_every_request_finishes_with_all_its_tokens_even_under_preemption():
    requests = generate(30, 200.0, "100-400", "20-60", seed=3)
    # A cache of a few requests' worth of blocks: running requests get preempted.
    result = serve(requests, linear_cost, kv_blocks=60, block_tokens=16, token_budget=512)
    assert result.preemptions > 0
    for state in result.requests:
        assert state.finish_s is not None and state.generated == state.request.output_tokens
        assert state.blocks == 0
    assert max(it["kv_blocks_used"] for it in result.iterations) <= 60


def test_shortest_job_first_lets_a_short_request_pass():
    requests = [Request(0, 0.0, 2000, 200), Request(1, 0.0, 2000, 200), Request(2, 0.0, 50, 5)]
    ttft = {}
    for policy in ("fcfs", "sjf"):
        result = serve(requests, linear_cost, kv_blocks=1000, block_tokens=16, token_budget=2048, max_batch=1,
                       policy=policy)
        ttft[policy] = per_request(result)[2]["ttft_s"]
    assert ttft["sjf"] < ttft["fcfs"]


def test_streams_are_seeded_and_arrive_at_their_rate():
    a, b = generate(2000, 10.0, "512-2048", "128", seed=5), generate(2000, 10.0, "512-2048", "128", seed=5)
    assert a == b and a != generate(2000, 10.0, "512-2048", "128", seed=6)
    assert a[-1].arrival_s == pytest.approx(200.0, rel=0.1)
    assert all(512 <= r.prompt_tokens <= 2048 and r.output_tokens == 128 for r in a)
    bursty = generate(2000, 10.0, "512", "128", seed=5, process="gamma", cv=3.0)
    assert bursty[-1].arrival_s == pytest.approx(200.0, rel=0.3)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "mean": 50.5}


def test_a_trace_is_read_by_arrival_and_checked(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.1,200,20\n")
    assert [r.prompt_tokens for r in read_trace(path)] == [200, 100]
    path.write_text("arrival_s,prompt_tokens\n0.5,100\n")
    with pytest.raises(DesError, match="columns arrival_s, prompt_tokens, output_tokens"):
        read_trace(path)


def test_rounded_kv_lengths_stay_within_half_a_per_cent_of_exact_keys():
    from des.study.iteration import IterationCost

    requests = generate(12, 20.0, "200-600", "8-24", seed=2)
    out = {}
    for exact in (False, True):
        cost = IterationCost("dgx-h100", "llama-3-8b", 2, exact=exact)
        out[exact] = summary(serve(requests, cost.cost_s, 20000, 16))
    for metric in ("ttft_s", "tpot_s"):
        assert out[False][metric]["mean"] == pytest.approx(out[True][metric]["mean"], rel=0.005), metric


def test_des_serve_json(capsys):
    code, out, err = call(capsys, "serve", "--model", "llama-3-8b", "--tp", "2", "--rate", "20", "--requests", "6",
                          "--prompt-tokens", "128-256", "--output-tokens", "4-8", "--json")
    assert code == 0, err
    record = json.loads(out)
    for key in ("requests", "ttft_s", "tpot_s", "e2e_s", "throughput_requests_per_s", "throughput_tokens_per_s",
                "iterations_simulated", "iteration_cache_hits", "wall_s"):
        assert key in record, key
    assert record["requests"] == 6 and set(record["ttft_s"]) == {"p50", "p90", "p99", "mean"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--rate", "5"], "needs --rate and --requests, or --trace-csv"),
    (["--rate", "-1", "--requests", "3"], "--rate must be a positive number"),
    (["--rate", "5", "--requests", "3", "--prompt-tokens", "9-3"], "--prompt-tokens"),
    (["--rate", "5", "--requests", "3", "--model", "mixtral-8x7b"], "dense models"),
])
def test_bad_serve_input_is_one_line(capsys, argv, message):
    code, _out, err = call(capsys, "serve", "--tp", "2", *argv)
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1


def test_des_serve_writes_its_tables_and_charts(tmp_path, capsys):
    code, out, err = call(capsys, "serve", "--model", "llama-3-8b", "--tp", "2", "--rate", "40", "--requests", "8",
                          "--prompt-tokens", "256-512", "--output-tokens", "8-16", "--kv-blocks", "60",
                          "--out", str(tmp_path))
    assert code == 0, err
    for name in ("requests.csv", "iterations.csv", "latency_cdf.png", "occupancy.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = (tmp_path / "requests.csv").read_text().splitlines()
    assert rows[0].startswith("id,arrival_s,prompt_tokens,output_tokens,ttft_s") and len(rows) == 9
    assert "preemptions" in out


@pytest.mark.parametrize("arch", ["standard", "parallel", "ladder", "kraken"])
def test_the_layer_period_and_head_estimate_meets_the_whole_model(arch):
    from des.study.iteration import IterationCost

    estimate = IterationCost("dgx-a100", "llama-3-8b", 4, arch)
    exact = IterationCost("dgx-a100", "llama-3-8b", 4, arch, exact=True)
    for shape in (([(384, 0)], 0, 0, 1), ([], 16, 700, 16), ([(200, 512)], 8, 300, 8)):
        assert estimate.cost_s(*shape) == pytest.approx(exact.cost_s(*shape), rel=1e-3), shape


def test_disaggregated_serving_takes_the_first_token_from_the_prefill_group():
    from des.serve.disaggregated import serve_disaggregated

    def decode_cost(prefills, decodes, decode_kv, emitting):
        return FIXED_S + DECODE_S

    request = Request(0, 0.0, 1000, 5)
    for transfer in (0.0, 0.05):
        result = serve_disaggregated([request], linear_cost, decode_cost, lambda tokens, t=transfer: t, 1000, 1000, 16)
        (row,) = per_request(result)
        assert row["ttft_s"] == pytest.approx(FIXED_S + 1000 * PREFILL_S_PER_TOKEN)  # the transfer is not in it
        assert row["e2e_s"] == pytest.approx(row["ttft_s"] + transfer + 4 * (FIXED_S + DECODE_S))


def test_disaggregated_serving_finishes_everything_under_pressure():
    from des.serve.disaggregated import serve_disaggregated

    requests = generate(40, 400.0, "200-800", "10-60", seed=9)
    result = serve_disaggregated(requests, linear_cost, lambda *a: FIXED_S + DECODE_S, lambda tokens: 1e-6 * tokens,
                                 120, 80, 16, token_budget=512)
    assert all(s.generated == s.request.output_tokens and s.finish_s is not None for s in result.requests)
    assert result.preemptions > 0


def test_des_serve_disaggregated(capsys):
    code, out, err = call(capsys, "serve", "--system", "dgx-h100", "--model", "llama-3-8b", "--rate", "20",
                          "--requests", "4", "--prompt-tokens", "128-256", "--output-tokens", "4-8",
                          "--disaggregate", "2:2", "--json")
    assert code == 0, err
    assert json.loads(out)["disaggregate"] == "2:2"
    code, _out, err = call(capsys, "serve", "--system", "dgx-h100", "--model", "llama-3-8b", "--rate", "20",
                           "--requests", "4", "--disaggregate", "6:6")
    assert code == 2 and "needs 12 devices" in err


def test_one_request_on_an_idle_system_is_des_run_prefill_then_decode_steps():
    from des.study import PointSpec, run_point
    from des.study.iteration import IterationCost

    common = dict(system="dgx-a100", model="llama-3-8b", arch="standard", tp=2)
    prefill = run_point(PointSpec(**common, seq=512, phase="prefill")).record["latency_s"]
    # The first decode attends over the prompt and its own token, the second one more.
    steps = [run_point(PointSpec(**common, batch=1, kv_len=kv, phase="decode")).record["latency_s"] for kv in (513, 514)]
    for exact, rel in ((True, 1e-9), (False, 1e-3)):
        cost = IterationCost("dgx-a100", "llama-3-8b", 2, exact=exact)
        result = serve([Request(0, 0.0, 512, 3)], cost.cost_s, kv_blocks=1000, block_tokens=16)
        (row,) = per_request(result)
        assert row["ttft_s"] == pytest.approx(prefill, rel=rel)  # no scheduler overhead by default
        assert [it["seconds"] for it in result.iterations[1:]] == pytest.approx(steps, rel=rel)
        assert row["e2e_s"] == pytest.approx(prefill + sum(steps), rel=rel)


def test_littles_law_holds_on_a_long_stable_run():
    rate = 50.0
    requests = generate(400, rate, "100-400", "20-60", seed=11)
    result = serve(requests, linear_cost, kv_blocks=100000, block_tokens=16)
    rows = per_request(result)
    # Requests in the system, integrated over time, against the sum of their latencies:
    # equal but for the part of an iteration a request arrives into (counted from the
    # next one), so at most one iteration per request.
    area = sum(it["in_system"] * it["seconds"] for it in result.iterations)
    latencies = sum(r["e2e_s"] for r in rows)
    longest = max(it["seconds"] for it in result.iterations)
    assert 0.0 <= latencies - area <= len(rows) * longest
    makespan = summary(result)["makespan_s"]
    mean_in_flight, mean_latency = area / makespan, latencies / len(rows)
    assert mean_in_flight == pytest.approx(rate * mean_latency, rel=0.1)  # the finite run's Poisson noise


def test_throughput_saturates_at_the_batch_limit():
    # Decode-bound requests; an iteration of B decodes costs FIXED_S + DECODE_S whatever B.
    bound = 8 / (FIXED_S + DECODE_S)
    throughput = {}
    for rate in (1e3, 1e4):
        result = serve(generate(200, rate, "16", "200", seed=1), linear_cost, kv_blocks=100000, block_tokens=16,
                       max_batch=8)
        assert max(it["batch"] for it in result.iterations) == 8
        throughput[rate] = summary(result)["throughput_tokens_per_s"]
    assert throughput[1e3] <= bound and throughput[1e3] == pytest.approx(bound, rel=0.02)
    assert throughput[1e4] == pytest.approx(throughput[1e3], rel=0.005)


def test_a_kv_cache_too_small_for_one_request_is_a_clear_error(capsys):
    with pytest.raises(DesError, match="a request of 1100 tokens needs 69 KV blocks; the cache holds 68"):
        serve([Request(0, 0.0, 1000, 100)], linear_cost, kv_blocks=68, block_tokens=16)
    code, _out, err = call(capsys, "serve", "--model", "llama-3-8b", "--tp", "2", "--rate", "5", "--requests", "2",
                           "--prompt-tokens", "1000", "--output-tokens", "100", "--kv-blocks", "10")
    assert code == 2 and "needs 69 KV blocks" in err and err.count("\n") == 1


def test_preemption_happens_exactly_when_the_blocks_run_out():
    # Two requests of 64 + 100 tokens hold at most 163 cached tokens each: 11 blocks of 16.
    requests = [Request(0, 0.0, 64, 100), Request(1, 0.0, 64, 100)]
    assert serve(requests, linear_cost, kv_blocks=22, block_tokens=16).preemptions == 0
    result = serve(requests, linear_cost, kv_blocks=21, block_tokens=16)
    preempted = [i for i, it in enumerate(result.iterations) if it["preempted"]]
    # Both are prefilled in iteration 0 (64 cached each) and then decode in step; the
    # 11th blocks are needed when 160 are cached, at decode 97: one of them gets the last
    # free block, the other preempts the later admitted (itself: it goes back to wait).
    assert preempted[0] == 97
    assert result.iterations[96]["kv_blocks_used"] == 20 and result.iterations[97]["preempted"] == 1
    assert all(it["kv_blocks_used"] <= 21 for it in result.iterations)


def test_same_seed_same_tables_byte_for_byte(tmp_path, capsys):
    argv = ["serve", "--model", "llama-3-8b", "--tp", "2", "--rate", "30", "--requests", "6", "--prompt-tokens",
            "128-256", "--output-tokens", "4-8", "--seed", "4"]
    for name in ("a", "b"):
        code, _out, err = call(capsys, *argv, "--out", str(tmp_path / name))
        assert code == 0, err
    for table in ("requests.csv", "iterations.csv"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()


def test_a_trace_with_a_bad_row_is_one_line_naming_it(tmp_path, capsys):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,100,10\n0.7,lots,10\n")
    with pytest.raises(DesError, match="line 3"):
        read_trace(path)
    code, _out, err = call(capsys, "serve", "--model", "llama-3-8b", "--tp", "2", "--trace-csv", str(path))
    assert code == 2 and f"{path}: line 3" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_pipeline_passes_each_iteration_through_its_stages_and_keeps_them_full():
    def staged(prefills, decodes, decode_kv, emitting):
        whole = linear_cost(prefills, decodes, decode_kv, emitting)
        return (0.25 * whole, 0.75 * whole)

    (row,) = per_request(serve([Request(0, 0.0, 1000, 5)], staged, kv_blocks=1000, block_tokens=16, stages=2))
    assert row["ttft_s"] == pytest.approx(FIXED_S + 1000 * PREFILL_S_PER_TOKEN)  # one engine: stage after stage
    assert row["tpot_s"] == pytest.approx(FIXED_S + DECODE_S)
    # Saturated by decodes: two engines alternate, the slower stage (3/4 of an
    # iteration) sets the pace: 8 tokens per 0.75 (FIXED_S + DECODE_S); 320 requests fill
    # 20 rounds of the two engines exactly.
    result = serve(generate(320, 1e4, "16", "200", seed=1), staged, kv_blocks=100000, block_tokens=16, max_batch=8,
                   stages=2)
    bound = 8 / (0.75 * (FIXED_S + DECODE_S))
    throughput = summary(result)["throughput_tokens_per_s"]
    assert throughput <= bound and throughput == pytest.approx(bound, rel=0.02)


def test_pipeline_stages_add_up_to_the_model_and_its_sends():
    from des.study.iteration import IterationCost

    whole = IterationCost("dgx-h100", "llama-3-8b", 2)
    staged = IterationCost("dgx-h100", "llama-3-8b", 2, pp=2)
    for shape in (([(384, 0)], 0, 0, 1), ([], 16, 700, 16)):
        stages = staged.cost_s(*shape)
        tokens = sum(chunk for chunk, _past in shape[0]) + shape[1]
        assert len(stages) == 2 and min(stages) > 0
        assert sum(stages) - staged._send(0, tokens) == pytest.approx(whole.cost_s(*shape), rel=1e-3)
    with pytest.raises(DesError, match="--pp with kraken"):
        IterationCost("dgx-h100", "llama-3-8b", 2, "kraken", pp=2)


def test_exact_pipeline_stages_simulate_each_stage_and_agree_with_the_estimate():
    from des.study.iteration import IterationCost

    estimate = IterationCost("dgx-h100", "llama-3-8b", 2, pp=2)
    exact = IterationCost("dgx-h100", "llama-3-8b", 2, pp=2, exact=True)
    whole = IterationCost("dgx-h100", "llama-3-8b", 2, exact=True)
    for shape in (([(384, 0)], 0, 0, 1), ([(100, 300)], 16, 700, 16)):
        stages, guessed = exact.cost_s(*shape), estimate.cost_s(*shape)
        tokens = sum(chunk for chunk, _past in shape[0]) + shape[1]
        # The first stage has the embedding, the last the head; each is simulated apart.
        assert stages[0] != stages[1]
        assert stages == pytest.approx(guessed, rel=1e-3)
        assert sum(stages) - exact._send(0, tokens) == pytest.approx(whole.cost_s(*shape), rel=1e-3)
