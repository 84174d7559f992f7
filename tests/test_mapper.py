"""The mapper: hand-worked cases, roofline and monotonicity, the schedule contract."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mapper_support import load_preset, tiny_device, with_fields

from des.errors import DesError
from des.mapper import MapperParams, schedule_for, search_schedule
from des.mapper.matmul import array_splits, grid
from des.operators import (
    Attention,
    BatchedMatmul,
    ElementwiseAdd,
    Gelu,
    LayerNorm,
    Matmul,
    Softmax,
)

A100 = load_preset("a100")
PRESETS = [A100, load_preset("h100"), load_preset("mi210")]
#: Ideal memory and no fixed latency, so hand-worked figures are exact.
IDEAL = MapperParams(dram_efficiency=1.0, dram_latency_s=0.0, matrix_efficiency=1.0)

ONE_OF_EACH = [
    Matmul(1024, 4096, 4096),
    Matmul(1, 4096, 4096),
    Matmul(4096, 4096, 1),
    Matmul(100, 7, 3000),
    BatchedMatmul(96, 128, 128, 128),
    BatchedMatmul(8, 1, 4096, 128),
    Softmax(4096, 4096),
    Softmax(3, 100_000),
    LayerNorm(1024, 12288),
    Gelu(2**24),
    ElementwiseAdd(1000),
    Attention(1, 16, 2048, 2048, 128, causal=True),
    Attention(8, 32, 1, 4096, 128),
    Attention(2, 4, 100, 300, 64, causal=True),
]


def peak_flops_per_s(device, operator):
    if operator.op_class in ("matmul", "attention"):
        return device.matrix_flops_per_s
    return device.vector_flops_per_s


# --------------------------------------------------------------------------- hand-worked


@pytest.mark.parametrize("K", [16, 64, 200])
def test_one_tile_on_one_array_is_fill_plus_k_plus_drain(K):
    # one unit, one 16x16 array: the 16x16 output is one fold, so the array takes
    # k + H + W = K + 32 cycles; L2 and DRAM are too fast to matter.
    device = tiny_device()
    schedule = search_schedule(device, Matmul(16, K, 16), IDEAL)
    assert schedule.tiles == 1
    assert schedule.mapping["l1_tile"]["M1"] == 16 and schedule.mapping["l1_tile"]["N1"] == 16
    assert schedule.standalone_s == pytest.approx((K + 16 + 16) / device.clock_hz, rel=1e-4)


def test_two_folds_stream_back_to_back():
    # a 32x16 output is two folds of the 16x16 array: 2 * K + H + W cycles
    device = tiny_device()
    schedule = search_schedule(device, Matmul(32, 64, 16), IDEAL)
    assert schedule.standalone_s == pytest.approx((2 * 64 + 32) / device.clock_hz, rel=1e-4)


def test_memory_bound_gemv_is_bytes_over_bandwidth():
    op = Matmul(1, 12288, 12288)
    schedule = search_schedule(A100, op, IDEAL)
    assert schedule.standalone_s == pytest.approx(op.min_dram_bytes / A100.dram_bandwidth_bytes_per_s)
    # with the default constants: one DRAM latency plus the bytes at the achievable rate
    params = MapperParams()
    schedule = search_schedule(A100, op, params)
    achievable = A100.dram_bandwidth_bytes_per_s * params.dram_efficiency
    assert schedule.standalone_s == pytest.approx(params.dram_latency_s + op.min_dram_bytes / achievable)


def test_large_square_gemm_approaches_peak():
    op = Matmul(8192, 8192, 8192)
    schedule = search_schedule(A100, op)
    achieved = op.flops / schedule.standalone_s / A100.matrix_flops_per_s
    assert 0.85 <= achieved <= MapperParams().matrix_efficiency


def test_small_k_split_gemm_uses_many_units():
    # 64x64 output, long K: one tile would leave 107 SMs idle, so K is split
    schedule = search_schedule(A100, Matmul(64, 65536, 64))
    assert schedule.mapping["k_split_units"] > 1


def test_tile_that_cannot_fit_sram_is_an_error():
    device = tiny_device(sram_bytes_per_unit=1024.0)
    with pytest.raises(DesError, match="SRAM"):
        search_schedule(device, Matmul(64, 64, 64))
    with pytest.raises(DesError, match="SRAM"):
        search_schedule(device, Attention(1, 1, 64, 64, 256))


def test_bad_device_and_operator_are_errors():
    with pytest.raises(DesError, match="dram_bandwidth_bytes_per_s"):
        search_schedule(with_fields(A100, dram_bandwidth_bytes_per_s=0.0), Matmul(4, 4, 4))
    with pytest.raises(DesError, match="no model"):
        schedule_for(A100, "matmul")
    with pytest.raises(DesError, match="DeviceSpec"):
        schedule_for("a100", Matmul(4, 4, 4))


def test_helpers():
    assert grid((16, 32, 64, 128), 40) == (16, 32, 64)
    assert grid((16, 32), 1000) == (16, 32)
    assert sorted(array_splits(4)) == [(1, 1, 4), (1, 2, 2), (1, 4, 1), (2, 1, 2), (2, 2, 1), (4, 1, 1)]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("device", PRESETS, ids=lambda d: d.name)
@pytest.mark.parametrize("operator", ONE_OF_EACH, ids=lambda op: op.describe())
def test_replay_equals_standalone_and_roofline_holds(device, operator):
    schedule, _ = schedule_for(device, operator, use_cache=False)
    assert schedule.replay_s(device.dram_bandwidth_bytes_per_s) == schedule.standalone_s
    roofline = max(
        operator.flops / peak_flops_per_s(device, operator),
        operator.min_dram_bytes / device.dram_bandwidth_bytes_per_s,
    )
    assert schedule.standalone_s >= roofline
    assert schedule.op_class == operator.op_class
    assert schedule.operator == operator.describe()
    assert schedule.device == device.name
    assert schedule.tiles >= 1 and schedule.waves >= 1
    for group in schedule.groups:
        assert group.count >= 1 and 1 <= group.units <= device.compute_units
        assert group.compute_s >= 0 and group.dram_bytes >= 0
    # every byte of the operator goes through DRAM at least once
    assert schedule.mapping["dram_bytes_physical"] >= operator.min_dram_bytes * (1 - 1e-12)
    json.dumps(schedule.mapping)


def test_dtype_changes_bytes():
    fp16 = search_schedule(A100, Matmul(1, 8192, 8192))
    fp8 = search_schedule(A100, Matmul(1, 8192, 8192, "fp8"))
    assert fp8.dram_bytes == pytest.approx(fp16.dram_bytes / 2)


# --------------------------------------------------------------------------- properties

DIM = st.integers(min_value=1, max_value=3000)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _latency(device, operator):
    return search_schedule(device, operator).standalone_s


OPERATORS = st.one_of(
    st.builds(Matmul, DIM, DIM, DIM),
    st.builds(BatchedMatmul, st.integers(1, 64), DIM, DIM, DIM),
    st.builds(Softmax, DIM, DIM),
    st.builds(LayerNorm, DIM, DIM),
    st.builds(Gelu, st.integers(1, 10**8)),
    st.builds(ElementwiseAdd, st.integers(1, 10**8)),
    st.builds(Attention, st.integers(1, 4), st.integers(1, 16), DIM, DIM, st.sampled_from([64, 128])),
)


@SETTINGS
@given(operator=OPERATORS, device=st.sampled_from(PRESETS))
def test_never_below_the_roofline(operator, device):
    schedule = search_schedule(device, operator)
    roofline = max(
        operator.flops / peak_flops_per_s(device, operator),
        operator.min_dram_bytes / device.dram_bandwidth_bytes_per_s,
    )
    assert schedule.standalone_s >= roofline
    assert schedule.replay_s(device.dram_bandwidth_bytes_per_s) == schedule.standalone_s


@SETTINGS
@given(
    dims=st.tuples(DIM, DIM, DIM),
    axis=st.integers(0, 2),
    grow=st.integers(1, 2000),
    device=st.sampled_from(PRESETS),
)
def test_matmul_latency_never_decreases_with_a_dimension(dims, axis, grow, device):
    bigger = list(dims)
    bigger[axis] += grow
    assert _latency(device, Matmul(*dims)) <= _latency(device, Matmul(*bigger)) * (1 + 1e-12)


@SETTINGS
@given(
    dims=st.tuples(st.integers(1, 32), DIM, DIM, DIM),
    axis=st.integers(0, 3),
    grow=st.integers(1, 500),
)
def test_bmm_latency_never_decreases_with_a_dimension(dims, axis, grow):
    bigger = list(dims)
    bigger[axis] += grow
    assert _latency(A100, BatchedMatmul(*dims)) <= _latency(A100, BatchedMatmul(*bigger)) * (1 + 1e-12)


@SETTINGS
@given(
    kind=st.sampled_from([Softmax, LayerNorm]),
    dims=st.tuples(st.integers(1, 50_000), st.integers(1, 100_000)),
    axis=st.integers(0, 1),
    grow=st.integers(1, 5000),
    device=st.sampled_from(PRESETS),
)
def test_rowwise_latency_never_decreases_with_a_dimension(kind, dims, axis, grow, device):
    bigger = list(dims)
    bigger[axis] += grow
    assert _latency(device, kind(*dims)) <= _latency(device, kind(*bigger)) * (1 + 1e-12)


@SETTINGS
@given(
    dims=st.tuples(st.integers(1, 4), st.integers(1, 16), DIM, DIM, st.sampled_from([64, 128])),
    axis=st.integers(0, 3),
    grow=st.integers(1, 1000),
    causal=st.booleans(),
)
def test_attention_latency_never_decreases_with_a_dimension(dims, axis, grow, causal):
    bigger = list(dims)
    bigger[axis] += grow
    if causal and axis == 2:  # a longer query block under a causal mask: keep the keys ahead
        bigger[3] += grow
    small = Attention(*dims, causal=causal)
    large = Attention(*bigger, causal=causal)
    assert _latency(A100, small) <= _latency(A100, large) * (1 + 1e-12)


@SETTINGS
@given(elements=st.integers(1, 10**9), grow=st.integers(1, 10**6), kind=st.sampled_from([Gelu, ElementwiseAdd]))
def test_elementwise_latency_never_decreases(elements, grow, kind):
    assert _latency(A100, kind(elements)) <= _latency(A100, kind(elements + grow))
