"""des calibrate: the fit recovers a known device, keeps its bounds, refuses bad files."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from helpers import calibration_folder, call
from hypothesis import given, settings
from hypothesis import strategies as st

from des.calibrate import DRAM_BOUNDS, EFFICIENCY_BOUNDS, SIGNIFICANT_PP, calibrate, find_tables
from des.errors import DesError
from des.fitted import FittedParams
from des.mapper import schedule_for
from des.operators import LayerNorm, Matmul, Softmax
from topologies import DEVICE_DIR, load_device

PLAIN = dataclasses.replace(load_device("a100"), fitted=None)
#: The "real" device the synthetic measurements come from.
TRUTH = FittedParams(
    matrix_efficiency=0.80, vector_efficiency=0.90,
    dram_efficiency=(("matmul", 0.75), ("rowwise", 0.70)),
    eager_launch_s=(("layernorm", 30e-6), ("matmul", 15e-6), ("softmax", 9e-6)),
)
GEMMS = [(m, 2048, 2048) for m in (16, 64, 256, 1024, 4096)] + [(m, 8192, 8192) for m in (64, 2048)]
SOFTMAXES = [(4096, c) for c in (64, 512, 2048, 8192)] + [(r, 4096) for r in (64, 1024, 16384)]
#: Layernorms do a tenth of softmax's vector work per element: DRAM-bound where softmax
#: is bound by its exponentials, so the two tell the DRAM and vector fractions apart.
LAYERNORMS = [(r, 8192) for r in (16, 256, 4096, 16384)]


def _measure(device, operator) -> float:
    launch = dict(device.fitted.eager_launch_s)[operator.op_class]
    return schedule_for(device, operator, use_cache=False)[0].standalone_s + launch


def _write_tables(folder):
    real = dataclasses.replace(PLAIN, fitted=TRUTH)
    lines = ["m,n,k,latency_s"] + [f"{m},{n},{k},{_measure(real, Matmul(m, k, n))!r}" for m, n, k in GEMMS]
    (folder / "a100_matmul.csv").write_text("\n".join(lines) + "\n")
    lines = ["rows,cols,latency_s"] + [f"{r},{c},{_measure(real, Softmax(r, c))!r}" for r, c in SOFTMAXES]
    (folder / "a100_softmax.csv").write_text("\n".join(lines) + "\n")
    lines = ["rows,cols,latency_s"] + [f"{r},{c},{_measure(real, LayerNorm(r, c))!r}" for r, c in LAYERNORMS]
    (folder / "a100_layernorm.csv").write_text("\n".join(lines) + "\n")
    (folder / "mi210_matmul.csv").write_text("m,n,k,latency_s\n64,64,64,1e-5\n")  # another device's
    (folder / "notes.txt").write_text("not a table\n")


def test_the_fit_recovers_a_known_device(tmp_path):
    _write_tables(tmp_path)
    tables, ignored = find_tables("a100", [tmp_path])
    assert sorted(op for _path, op in tables) == ["layernorm", "matmul", "softmax"]
    assert sorted(ignored) == ["mi210_matmul.csv", "notes.txt"]
    result = calibrate(PLAIN, tables, ignored)
    fitted = result.fitted
    assert fitted.matrix_efficiency == pytest.approx(TRUTH.matrix_efficiency, rel=0.02)
    assert fitted.vector_efficiency == pytest.approx(TRUTH.vector_efficiency, rel=0.02)
    for group, value in TRUTH.dram_efficiency:
        assert dict(fitted.dram_efficiency)[group] == pytest.approx(value, rel=0.02), group
    for op_class, seconds in TRUTH.eager_launch_s:
        assert dict(fitted.eager_launch_s)[op_class] == pytest.approx(seconds, rel=0.02, abs=0.3e-6), op_class
    assert all(error < 1.0 for error in result.mape_after_pct.values())
    assert not result.warnings


def test_fitted_values_stay_inside_their_bounds(tmp_path):
    # Measurements ten times slower than any physical fraction allows: the fit stops
    # at its bounds and says so.
    real = dataclasses.replace(PLAIN, fitted=TRUTH)
    lines = ["m,n,k,latency_s"] + [f"{m},{n},{k},{10 * _measure(real, Matmul(m, k, n))!r}" for m, n, k in GEMMS]
    (tmp_path / "a100_matmul.csv").write_text("\n".join(lines) + "\n")
    result = calibrate(PLAIN, *find_tables("a100", [tmp_path]))
    low, high = EFFICIENCY_BOUNDS
    assert low <= result.fitted.matrix_efficiency <= high
    low, high = DRAM_BOUNDS
    assert all(low <= value <= high for _group, value in result.fitted.dram_efficiency)
    assert any("bound" in warning for warning in result.warnings)


def _one_table(folder, kind, rows, truth):
    real = dataclasses.replace(PLAIN, fitted=truth)
    build = {"softmax": Softmax, "layernorm": LayerNorm}[kind]
    lines = ["rows,cols,latency_s"] + [f"{r},{c},{_measure(real, build(r, c))!r}" for r, c in rows]
    (folder / f"a100_{kind}.csv").write_text("\n".join(lines) + "\n")
    return calibrate(PLAIN, *find_tables("a100", [folder]))


def test_softmax_alone_moves_the_vector_fraction_that_bounds_it(tmp_path):
    # Softmax measured on a device with a slower vector unit: the vector explanation fits
    # them, the DRAM one does not, and the DRAM fraction (layernorm's too) stays put.
    truth = FittedParams(vector_efficiency=0.75, eager_launch_s=(("softmax", 9e-6),))
    result = _one_table(tmp_path, "softmax", SOFTMAXES, truth)
    assert result.fitted.vector_efficiency == pytest.approx(0.75, rel=0.02)
    assert "rowwise" not in dict(result.fitted.dram_efficiency)
    assert any("prefer the vector explanation" in note for note in result.notes)


def test_layernorm_alone_moves_the_dram_fraction_that_bounds_it(tmp_path):
    truth = FittedParams(dram_efficiency=(("rowwise", 0.6),), eager_launch_s=(("layernorm", 30e-6),))
    result = _one_table(tmp_path, "layernorm", LAYERNORMS, truth)
    assert dict(result.fitted.dram_efficiency)["rowwise"] == pytest.approx(0.6, rel=0.02)
    assert result.fitted.vector_efficiency is None


def test_a_fraction_the_tables_cannot_tell_apart_keeps_its_default(tmp_path):
    # Measurements of the datasheet device itself, 0.5 % slower: fitting gains less than
    # SIGNIFICANT_PP, so nothing moves off its default.
    truth = FittedParams(vector_efficiency=0.995, eager_launch_s=(("softmax", 9e-6),))
    result = _one_table(tmp_path, "softmax", SOFTMAXES, truth)
    assert result.fitted.vector_efficiency is None and not result.fitted.dram_efficiency
    assert any(f"< {SIGNIFICANT_PP}" in note for note in result.notes)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a100_matmul.csv", "m,n,latency_s\n64,64,1e-5\n", "lacks one of the columns m, n, k, latency_s"),
        ("a100_matmul.csv", "m,n,k,latency_s\n64,64,x,1e-5\n", "line 2"),
        ("a100_softmax.csv", "rows,cols,latency_s\n64,64,-1\n", "latency_s must be a positive number"),
        ("a100_conv.csv", "a,b\n1,2\n", "not a table of a known kind"),
    ],
)
def test_a_file_in_a_wrong_format_is_one_clear_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DesError, match=message):
        calibrate(PLAIN, *find_tables("a100", [path]))


def test_no_table_of_the_device_names_what_was_looked_for(tmp_path):
    (tmp_path / "mi210_matmul.csv").write_text("m,n,k,latency_s\n64,64,64,1e-5\n")
    with pytest.raises(DesError, match="no microbenchmark table of device 'a100'"):
        find_tables("a100", [tmp_path])


def test_the_command_writes_a_loadable_yaml_keeping_the_datasheet(tmp_path, capsys):
    _write_tables(tmp_path)
    out = tmp_path / "a100-calibrated.yaml"
    code, text, err = call(capsys, "calibrate", "a100", "--data", str(tmp_path), "--out", str(out))
    assert code == 0, err
    assert "ignored (not a100's tables): mi210_matmul.csv, notes.txt" in text
    device = load_device(str(out))
    assert device.fitted is not None and device.fitted.matrix_efficiency == pytest.approx(0.80, rel=0.02)
    original = yaml.safe_load((DEVICE_DIR / "a100.yaml").read_text())
    written = yaml.safe_load(out.read_text())
    assert {k: v for k, v in written.items() if k != "fitted"} == {k: v for k, v in original.items() if k != "fitted"}
    # The preset's datasheet comments are kept.
    assert "[DS]" in out.read_text()


def test_a_bad_output_path_is_refused_before_the_fit(tmp_path, capsys):
    _write_tables(tmp_path)
    code, _text, err = call(capsys, "calibrate", "a100", "--data", str(tmp_path), "--out", str(tmp_path / "no" / "x.yaml"))
    assert code == 2 and err.startswith("des: error:") and "Traceback" not in err


def test_the_a100_and_mi210_presets_carry_their_own_fit():
    folder = calibration_folder()
    for name in ("a100", "mi210"):
        device = load_device(name)
        assert device.fitted is not None and f"{name}_matmul.csv" in device.fitted.source
        result = calibrate(dataclasses.replace(device, fitted=None), *find_tables(name, [folder]))
        # The preset holds what the fit finds today (to the rounding it writes).
        assert device.fitted.matrix_efficiency == pytest.approx(result.fitted.matrix_efficiency, abs=1e-4)
        assert dict(device.fitted.dram_efficiency) == pytest.approx(dict(result.fitted.dram_efficiency), abs=1e-4)
        assert (device.fitted.vector_efficiency is None) == (result.fitted.vector_efficiency is None)
        if result.fitted.vector_efficiency is not None:
            assert device.fitted.vector_efficiency == pytest.approx(result.fitted.vector_efficiency, abs=1e-4)


def test_softmax_stages_a_row_that_layernorm_must_chunk():
    # A 32 KiB row (16384 fp16) fits an A100 unit's 96 KiB double buffer (softmax keeps
    # the row in shared memory) but not a lane group's quarter of it (layernorm).
    device = load_device("a100")
    softmax = schedule_for(device, Softmax(4096, 16384))[0].mapping
    layernorm = schedule_for(device, LayerNorm(4096, 16384))[0].mapping
    assert (softmax["column_chunks"], softmax["dram_reads"]) == (False, 1)
    assert (layernorm["column_chunks"], layernorm["dram_reads"]) == (True, 2)
    shorter = schedule_for(device, LayerNorm(4096, 8192))[0].mapping
    assert (shorter["column_chunks"], shorter["dram_reads"]) == (False, 1)


def test_a_row_longer_than_the_sram_budget_costs_more_than_one_dram_pass():
    device = load_device("a100")
    fits = LayerNorm(1024, 4096)          # 8 KiB rows: whole rows in SRAM, one pass
    spills = LayerNorm(1024 // 64, 4096 * 64)  # 512 KiB rows: more than a unit's SRAM
    per_element = {op: schedule_for(device, op)[0].dram_bytes / op.elements for op in (fits, spills)}
    # The input is read again to normalise: at least 3 of the one-pass 2 bytes-per-byte.
    assert per_element[spills] >= 1.4 * per_element[fits]


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 8192), k=st.sampled_from([64, 512, 4096, 12288]), n=st.sampled_from([64, 512, 4096, 12288]),
       grow=st.sampled_from(["m", "k", "n"]), factor=st.sampled_from([2, 3]))
def test_a_gemm_never_gets_faster_as_a_dimension_grows(m, k, n, grow, factor):
    device = load_device("a100")
    dims = {"m": m, "k": k, "n": n}
    base = schedule_for(device, Matmul(dims["m"], dims["k"], dims["n"]))[0].standalone_s
    dims[grow] *= factor
    grown = schedule_for(device, Matmul(dims["m"], dims["k"], dims["n"]))[0].standalone_s
    assert grown >= base * (1 - 1e-9)


def test_the_h100_preset_against_its_measurements_per_family():
    from pathlib import Path

    from des.validate.operators import validate_operators

    data = Path(__file__).parent / "data" / "h100"
    report = validate_operators(load_device("h100"), [data])
    families = report.family_mape_pct
    assert set(families) == {"matmul", "bmm", "softmax", "layernorm", "gelu", "add", "attention"}
    # Fitted on these same rows (des calibrate): an in-sample guard, per family.
    assert families["matmul"] <= 8.0 and families["attention"] <= 10.0
    assert all(value <= 20.0 for value in families.values()), families


def _load_measure_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "measure_ops.py"
    spec = importlib.util.spec_from_file_location("measure_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # torch is imported only inside main()
    return module


def test_the_minimal_microbenchmark_set_fits_every_parameter(tmp_path):
    # The README's short list for new hardware (scripts/measure_ops.py --set minimal):
    # measurements of a known device at exactly those shapes give back its parameters.
    from des.calibrate import COMBINED_SHAPES

    minimal = _load_measure_script().MINIMAL
    truth = FittedParams(
        matrix_efficiency=0.80, vector_efficiency=0.85,
        dram_efficiency=(("elementwise", 0.80), ("matmul", 0.75), ("rowwise", 0.70)),
        eager_launch_s=(("attention", 20e-6), ("elementwise", 12e-6), ("gelu", 14e-6), ("layernorm", 30e-6),
                        ("matmul", 15e-6), ("softmax", 9e-6)),
    )
    real = dataclasses.replace(PLAIN, fitted=truth)
    shapes = [("matmul", "x".join(map(str, s))) for s in minimal["matmul"]]
    shapes += [(kind, f"{r}x{c}") for kind in ("softmax", "layernorm", "gelu") for r, c in minimal[kind]]
    shapes += [("add", str(e)) for e in minimal["add"]]
    shapes += [("attention", "x".join(map(str, a[:5])) + ("c" if a[5] else "")) for a in minimal["attention"]]
    lines = ["op,shape,latency_s"] + [f"{op},{shape},{_measure(real, COMBINED_SHAPES[op](shape))!r}" for op, shape in shapes]
    (tmp_path / "a100_ops.csv").write_text("\n".join(lines) + "\n")
    assert len(shapes) <= 25
    fitted = calibrate(PLAIN, *find_tables("a100", [tmp_path])).fitted
    assert fitted.matrix_efficiency == pytest.approx(0.80, rel=0.02)
    assert fitted.vector_efficiency == pytest.approx(0.85, rel=0.02)
    assert dict(fitted.dram_efficiency) == pytest.approx(dict(truth.dram_efficiency), rel=0.02)
    assert dict(fitted.eager_launch_s) == pytest.approx(dict(truth.eager_launch_s), rel=0.02, abs=0.3e-6)


def test_decode_gemms_get_a_dram_fraction_of_their_own(tmp_path):
    # Skinny (2-16 rows) and one-row GEMMs run their own kernels: measured on a device
    # whose decode GEMMs stream at 0.6 of peak while large ones reach 0.85, the fit
    # tells the two apart; a device without decode rows gives them the GEMMs' fraction.
    from des.fitted import dram_group_of

    assert [dram_group_of(Matmul(m, 4096, 4096)) for m in (1, 8, 16, 17)] == ["gemv", "skinny", "skinny", "matmul"]
    truth = FittedParams(
        matrix_efficiency=0.80, dram_efficiency=(("gemv", 0.6), ("matmul", 0.85), ("skinny", 0.6)),
        eager_launch_s=(("matmul", 15e-6),),
    )
    real = dataclasses.replace(PLAIN, fitted=truth)
    shapes = [(m, 8192, 8192) for m in (1, 4, 8, 16, 64, 512, 4096)] + [(256, 256, 256)]
    lines = ["m,n,k,latency_s"] + [f"{m},{n},{k},{_measure(real, Matmul(m, k, n))!r}" for m, n, k in shapes]
    (tmp_path / "a100_matmul.csv").write_text("\n".join(lines) + "\n")
    fitted = calibrate(PLAIN, *find_tables("a100", [tmp_path])).fitted
    assert dict(fitted.dram_efficiency) == pytest.approx(dict(truth.dram_efficiency), rel=0.02)
    preset = load_device("a100")  # calibrated without decode rows
    assert "skinny" not in dict(preset.fitted.dram_efficiency)
    assert preset.fitted.mapper_overrides("matmul", "skinny")["dram_efficiency"] == dict(preset.fitted.dram_efficiency)["matmul"]
