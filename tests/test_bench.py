"""`rnnkit bench` and rnnkit.bench: the table has every row, consistent ratios and targets;
the streaming contestants write the same text and leave the caller's autograd mode alone.

Tiny shapes and one repeat: these tests check the table, never the timings.
"""
import pytest
import torch

from rnnkit import bench
from rnnkit.cli import main
from rnnkit.commands.bench import _timing_row

TINY = "5x2x4,3x1x2"
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="CUDA is not available"))]


def _table(text: str) -> list[dict]:
    """The Markdown table of `rnnkit bench` as dicts keyed by its header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "").split()) == {"---"}
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells)))
    return rows


@pytest.mark.parametrize("device", DEVICES)
def test_bench_command_prints_every_row(device, capsys):
    assert main(["bench", "--shapes", TINY, "--repeats", "1", "--warmup", "0", "--threads", "1",
                 "--stream-steps", "3", "--device", device]) == 0
    out = capsys.readouterr().out
    (device_line,) = [line for line in out.splitlines() if line.startswith("device: ")]
    assert device_line.startswith(f"device: {device}")
    if device == "cuda":
        assert torch.cuda.get_device_name() in device_line
    rows = _table(out)
    names = [c.name for c in bench.standard_cases() + bench.variant_cases()]
    timed = [r for r in rows if r["unit"] == "ms"]
    assert [(r["benchmark"].replace(" (noisy)", ""), r["shape (T,B,H)"]) for r in timed] == [
        (name, shape) for shape in ("(5, 2, 4)", "(3, 1, 2)") for name in names
    ]
    for r in timed:
        ours, reference = float(r["rnnkit"]), float(r["reference"].split()[-1])
        assert ours > 0 and reference > 0
        assert float(r["ratio"]) == pytest.approx(ours / reference, rel=0.05, abs=0.01)  # both rounded to 0.001 ms
        assert r["target"] == r["met"] == ""  # no targets at shapes other than issue 7's
        expected_reference = "torch.nn.LSTM" if "variant" in _tags(r["benchmark"]) else None
        if expected_reference:
            assert r["reference"].startswith(expected_reference)
    flops = [r for r in rows if r["unit"] == "GFLOP/s"]
    assert [r["shape (T,B,H)"] for r in flops] == ["(5, 2, 4)", "(3, 1, 2)"]
    for r in flops:
        achieved, peak = float(r["rnnkit"]), float(r["reference"].split()[-1])
        assert peak > 0 and achieved >= 0
        assert float(r["ratio"]) == pytest.approx(achieved / peak, abs=0.01)
    streaming = [r for r in rows if r["unit"] == "chars/s"]
    expected = [("torch.nn.LSTM per step", ">= 10.00"), ("nn.LSTMCell loop", ">= 1.50")]
    assert [(r["reference"].rsplit(" ", 1)[0], r["target"]) for r in streaming] == (expected if device == "cpu" else [])
    for r in streaming:
        ratio = float(r["ratio"])
        assert ratio == pytest.approx(float(r["rnnkit"]) / float(r["reference"].split()[-1]), rel=0.05, abs=0.01)
        assert r["met"] == ("yes" if ratio >= float(r["target"].split()[-1]) else "no")
    assert len(rows) == len(timed) + len(flops) + len(streaming)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()  # as before the command


def _tags(name: str) -> list[str]:
    (case,) = [c for c in bench.standard_cases() + bench.variant_cases() if c.name == name.replace(" (noisy)", "")]
    return case.tags


@pytest.mark.parametrize("args, expected", [
    (["--shapes", "5x2"], "TxBxH"),
    (["--shapes", "0x2x4"], "TxBxH"),
    (["--repeats", "0"], "--repeats"),
    (["--threads", "-1"], "--threads"),
    (["--stream-steps", "-2"], "--stream-steps"),
    (["--device", "gpu"], "--device"),
])
def test_bench_command_bad_arguments(args, expected, capsys):
    assert main(["bench", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert captured.out == ""


def test_targets_and_met_column():
    variant = bench.variant_cases()[0]
    standard = bench.standard_cases()[0]
    assert bench.target_for(variant, (100, 64, 256)) == 1.25
    assert bench.target_for(variant, (200, 16, 128)) == 2.0
    assert bench.target_for(standard, (200, 16, 128)) == 1.05
    assert bench.target_for(variant, (5, 2, 4)) is None
    row = {"case": variant.name, "tags": variant.tags, "shape": [100, 64, 256], "rnnkit_ms": 13.0,
           "torch_ms": 10.0, "ratio": 1.3, "target": 1.25, "noisy": False}
    cells = _timing_row(row)
    assert cells[-2:] == ["<= 1.25", "no"] and cells[4] == "torch.nn.LSTM 10.000"
    cells = _timing_row({**row, "ratio": 1.2})
    assert cells[-1] == "yes"


def test_measure_runs_all_sides_on_the_same_layers():
    case = bench.variant_cases()[1]  # layer-norm LSTM: fused path and step loop both run
    row = bench.measure(case, (4, 3, 5), repeats=3, warmup=1, gen=torch.Generator().manual_seed(0), loop=True)
    assert set(row["samples_ms"]) == {"rnnkit", "torch", "loop"}
    assert all(len(v) == 3 for v in row["samples_ms"].values())
    assert row["ratio"] == pytest.approx(row["rnnkit_ms"] / row["torch_ms"])
    assert row["loop_ms"] > 0


def test_lstm_training_flops_counts_every_product():
    # one step, B = I = H = 1: forward 2 * (1 + 1) * 4 = 16 FLOPs; backward 16 (weights)
    # + 8 (h_tm1) + 8 with the input's gradient
    assert bench.lstm_training_flops(1, 1, 1, 1) == 40
    assert bench.lstm_training_flops(1, 1, 1, 1, input_grad=True) == 48
    assert bench.lstm_training_flops(100, 64, 256, 256) == 100 * 64 * 4 * 256 * 2 * (2 * 512 + 256)


def test_parse_shapes():
    assert bench.parse_shapes("100x64x256, 2X3X4") == [(100, 64, 256), (2, 3, 4)]
    with pytest.raises(ValueError, match="got 'axbxc'"):
        bench.parse_shapes("axbxc")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_bench_command_cuda_without_cuda(capsys):
    assert main(["bench", "--device", "cuda", "--shapes", "2x1x2"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "cuda" in lines[0] and "torch.cuda.is_available() is False" in lines[0]
    assert captured.out == ""


def test_resolve_device_and_targets_per_device():
    assert bench.resolve_device("cpu") == torch.device("cpu")
    assert bench.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="got 'tpu'"):
        bench.resolve_device("tpu")
    standard, variant = bench.standard_cases()[0], bench.variant_cases()[0]
    for shape in bench.CUDA_SHAPES:  # on CUDA: the standard rows; the variants at (100, 64, 256) only
        assert bench.target_for(standard, shape, "cuda") == 1.05
        assert bench.target_for(variant, shape, "cuda") == (1.5 if shape == (100, 64, 256) else None)
    assert bench.target_for(variant, (100, 64, 256), "cpu") == 1.25
    assert bench.device_name("cpu") == "CPU"


def _modes():
    return torch.is_grad_enabled(), torch.is_inference_mode_enabled()


def test_streaming_contestants_write_the_same_text_and_leak_no_mode():
    lm, lstm, cells = bench.streaming_models(vocab=11, embedding=5, hidden=6, layers=2)
    gens = [bench.gen_stream(lm, 7), bench.gen_torch_lstm(lm, lstm, 7), bench.gen_torch_lstm(lm, lstm, 7, onednn=False),
            bench.gen_cells(lm, cells, 7)]
    before = _modes()
    assert before == (True, False)
    texts = []
    for gen in gens:  # interleaved, as the benchmark runs them: every one suspended mid-text
        texts.append(bench.take(gen, 5))
        assert _modes() == before
    for gen, text in zip(gens, texts):
        text.extend(bench.take(gen, 25))
        assert _modes() == before
    assert texts[0] == texts[1] == texts[2] == texts[3]  # the same weights and sampler: the same text
    assert len(set(texts[0])) > 1  # and a text, not one character repeated
    x = torch.ones(2, requires_grad=True)
    assert (x * 2).requires_grad  # autograd still records for the caller


def test_streaming_rates_times_every_contestant():
    rates = bench.streaming_rates(steps=4, slow_steps=2, rounds=2, hidden=6, layers=1, vocab=7, embedding=3)
    assert set(rates) == {"stream", *bench.STREAMING_TARGETS}
    assert all(r > 0 for r in rates.values())
    assert _modes() == (True, False)
