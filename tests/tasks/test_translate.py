"""translate: tokens and their inverse, BLEU from summed statistics, the held-out split, a falling
loss, prediction from a saved run (Python and command line), user TSV files and their errors."""
import json
import os
import random
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.tasks.translate import (HYPHEN, TranslateOptions, TranslateTask, bleu_from_stats, bleu_stats,
                                    plot_attention, translation_detokenize, translation_tokenize)
from rnnkit.training import TrainConfig
from rnnkit.runs import evaluate, train

pytest.importorskip("num2words", reason="the default translate data needs num2words (pip install num2words)")
pytest.importorskip("sacrebleu", reason="translate's BLEU needs sacrebleu (pip install sacrebleu)")

from rnnkit.data.datasets.numbers import number_pairs  # noqa: E402


# -- tokens ----------------------------------------------------------------------------------

def test_hyphens_become_tokens_and_detokenising_gives_the_text_back():
    assert translation_tokenize("Quatre-vingt-dix-neuf mille") == ["quatre", HYPHEN, "vingt", HYPHEN, "dix", HYPHEN,
                                                                   "neuf", "mille"]
    # Punctuation is split off words (issue 14), marked with @ on the side it was glued to.
    assert translation_tokenize("one thousand, two") == ["one", "thousand", "@,", "two"]
    assert translation_tokenize("a - b -x y-") == ["a", "-", "b", "-@", "x", "y", "@-"]  # a free-standing "-" stays
    # Runs made before that keep the old tokens (words, only in-word hyphens split).
    assert translation_tokenize("a - b -x y-, z", split_punctuation=False) == ["a", "-", "b", "-x", "y", HYPHEN, ",", "z"]
    assert translation_tokenize("Vingt", lower=False) == ["Vingt"]
    pairs = number_pairs(range(0, 100000, 97))
    for text in pairs.sources + pairs.targets + ["a - b", "x--y  z", "l'an-deux", "Save (as...) @home!", "a@, @@"]:
        assert translation_detokenize(translation_tokenize(text)) == " ".join(text.lower().split())
    # On the French number words the new tokens are the old ones; English has "one thousand, two".
    for text in pairs.targets + number_pairs(range(1000)).sources:
        assert translation_tokenize(text) == translation_tokenize(text, split_punctuation=False)
    assert translation_tokenize("one thousand, two") != translation_tokenize("one thousand, two", split_punctuation=False)
    with pytest.raises(TypeError, match="translation_tokenize: text must be a str, got int"):
        translation_tokenize(5)


def test_bleu_summed_over_batches_is_sacrebleu_corpus_bleu():
    from sacrebleu.metrics import BLEU

    rng = random.Random(0)
    words = "un deux trois quatre cinq six sept huit neuf dix cent mille".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(60)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split()[: rng.randint(1, 9)]) for r in refs]
    totals: dict = {}
    for start in range(0, 60, 16):
        for k, v in bleu_stats(hyps[start : start + 16], refs[start : start + 16]).items():
            totals[k] = totals.get(k, 0.0) + v
    expected = BLEU().corpus_score(hyps, [refs]).score
    assert 0 < expected < 100 and bleu_from_stats(totals) == pytest.approx(expected, abs=1e-9)
    prefixed = {f"greedy_{k}": v for k, v in totals.items()}
    assert bleu_from_stats(prefixed, "greedy_") == pytest.approx(expected, abs=1e-9)


# -- data ------------------------------------------------------------------------------------

SMALL = dict(max_number=1999, test_blocks="1", test_endings="77", val_blocks="", val_endings="38", val_size=0)


def test_prepare_holds_out_the_test_numbers_and_fits_vocabularies_on_train():
    task = TranslateTask(TranslateOptions(**SMALL, source_tokenizer="word", target_tokenizer="word"))
    data = task.prepare(seed=0)
    source_vocab, target_vocab = task.vocabs
    sizes = task.meta["sizes"]
    # test: 1,000..1,999 and the 10 endings 77 below 1,000 (1,x77 is in block 1 already).
    assert sizes == {"train": 1000 - 10 - 10, "val": 10, "test": 1000 + 10}
    train_sources = {" ".join(source_vocab.decode(row)) for row in data["train"].tensors["source"]}
    assert "seventy @-@ seven" not in " | ".join(train_sources) and "one thousand" not in " | ".join(train_sources)
    groups = data["test"].tensors["group"]
    assert int((groups == 1).sum()) == 990 and int((groups == 2).sum()) == 10 and int((groups == 3).sum()) == 10
    assert "mille" not in target_vocab and "seventy" in source_vocab  # vocabularies from train only
    t = data["test"].tensors
    assert t["target"][:, 0].eq(target_vocab.bos_index).all()
    last = t["target"].gather(1, (t["target_lengths"] - 1)[:, None])[:, 0]
    assert last.eq(target_vocab.eos_index).all()
    # train_size samples the training numbers (seeded); max_decode_len from the training targets.
    small = TranslateTask(TranslateOptions(**{**SMALL, "train_size": 100}))
    assert len(small.prepare(seed=0)["train"]) == 100 and small.meta["max_decode_len"] >= 10


@pytest.mark.parametrize("field, value, words", [
    ("attention", "dot", "attention must be one of luong, bahdanau, none, got 'dot'"),
    ("beam_size", 0, "beam_size must be an int >= 1, got 0"),
    ("length_alpha", -0.5, "length_alpha must be >= 0, got -0.5"),
    ("test_blocks", "23;58", "test_blocks must be comma-separated non-negative integers, got '23;58'"),
    ("val_endings", "3x", "val_endings must be comma-separated non-negative integers, got '3x'"),
    ("test_data", "t.tsv", "test_data needs data"),
])
def test_options_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"TranslateOptions: {words}"):
        TranslateOptions(**{field: value})


# -- training and prediction -----------------------------------------------------------------

TINY = dict(max_number=999, test_blocks="", val_blocks="", test_endings="7", val_endings="8", val_size=0,
            embedding_dim=32, hidden_size=48, dropout=0.0, beam_size=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    summary = train("translate", TranslateOptions(**TINY),
                    TrainConfig(epochs=12, batch_size=32, lr=1e-2, schedule="cosine", seed=0, log_every=5),
                    root / "run", progress=False)
    return root / "run", summary


def test_learning_happens(run):
    run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < 0.2 * losses[0]
    # 0..999 minus the numbers ending in 7 (test) and 8 (val): the held-out endings need composing.
    # (Exact match of this 12-epoch model is not a stable signal: seed 0 gave > 0.3 on earlier CI
    # hosts and 0.14 on an AVX2 host, seeds 1 and 2 gave 0.0 there; token accuracy 0.77-0.88.)
    assert summary["val_token_accuracy"] > 0.75
    # Beam search finds translations at least as likely as greedy's; it must not lose exact matches
    # to poor beams that end early (the sentence is done only when no live beam can still win).
    assert summary["test_exact_match"] >= summary["test_greedy_exact_match"] - 0.05
    for key in ("test_exact_match", "test_bleu", "test_greedy_exact_match", "test_greedy_bleu", "test_loss",
                "test_exact_match_pattern", "best_val_exact_match"):
        assert key in summary
    assert "test_exact_match_range" not in summary  # no held-out blocks in this run


def test_a_run_translates(run):
    run_dir, _ = run
    model = rnnkit.load(run_dir)
    rows = model.predict(["two hundred and five", "Six Hundred And Forty-Three", ""])
    assert rows[0] == {"input": "two hundred and five", "translation": "deux cent cinq",
                       "log_prob": rows[0]["log_prob"], "score": rows[0]["score"]}
    assert rows[1]["translation"] == "six cent quarante-trois"
    assert all(isinstance(r["translation"], str) and r["log_prob"] <= 0 for r in rows)
    with pytest.raises(ValueError, match="translate: predict needs at least one INPUT"):
        model.predict([])
    # The task's metrics agree with decoding the test split by hand.
    task = model.task
    data = task.prepare(0)["test"].tensors
    sources = [task.tokenizers[0].detokenize(task.vocabs[0].decode(row)) for row in data["source"]]
    references = [task.detokenize(row) for row in data["target"]]
    hits = [row["translation"] == ref for row, ref in zip(task.translate(model.model, sources), references)]
    assert evaluate(run_dir)["test_exact_match"] == pytest.approx(sum(hits) / len(hits))


def test_the_run_keeps_its_tokenizers_as_json_and_reports_the_copy_baseline(run):
    run_dir, summary = run
    meta = json.loads((run_dir / "preprocess.json").read_text())
    assert meta["target_tokenizer"]["kind"] == "subword" == meta["source_tokenizer"]["kind"]  # the defaults
    assert json.loads(meta["target_tokenizer"]["model"])["model"]["type"] == "BPE"  # tokenizers' own JSON
    # English source copied as the French translation: no exact match, on the test split.
    assert summary["baseline_copy_source_test_exact_match"] == 0.0
    assert 0.0 <= summary["baseline_copy_source_test_bleu"] < 5.0
    task = rnnkit.load(run_dir).task
    pieces = task.tokenizers[1].tokenize("quatre-vingt-dix-sept")
    assert task.detokenize(task.vocabs[1].encode(pieces)) == "quatre-vingt-dix-sept"


def test_copy_source_baseline_scores_the_source_as_its_translation():
    from rnnkit.data.datasets.numbers import ParallelText
    from rnnkit.tasks.loaders import TensorData

    task = TranslateTask(TranslateOptions())
    task.meta = {"lower": True}
    test = TensorData({"x": torch.zeros(3)}, raw=ParallelText(["OK", "Save  file", "Quit"], ["ok", "enregistrer", "quit"]))
    scores = task.baselines({"test": test})["copy_source"]
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["bleu"] == pytest.approx(bleu_from_stats(bleu_stats(["ok", "save file", "quit"],
                                                                      ["ok", "enregistrer", "quit"])))


@pytest.mark.parametrize("source, target", [("char", "char"), ("word", "subword")])
def test_each_tokenizer_trains_a_step_and_decodes(source, target):
    task = TranslateTask(TranslateOptions(**{**TINY, "source_tokenizer": source, "target_tokenizer": target}))
    data = task.prepare(seed=0)
    assert task.meta["target_tokenizer"]["kind"] == target
    t = data["test"].tensors
    references = [task.detokenize(row) for row in t["target"]]
    assert references == [" ".join(r.split()) for r in data["test"].raw.targets]  # tokens invert exactly
    model = task.build_model()
    out = task.step(model, data["train"].take(list(range(4))))
    out.loss_sum.backward()
    model.eval()
    with torch.no_grad():
        assert task.step(model, data["test"].take([0, 1])).stats["sentences"] == 2


def test_a_run_made_before_tokenizers_were_chosen_reads_words():
    task = TranslateTask(TranslateOptions(**{**SMALL, "source_tokenizer": "word", "target_tokenizer": "word"}))
    task.prepare(seed=0)
    old = TranslateTask(TranslateOptions(**SMALL))  # today's defaults, as an old config.json reads
    old.meta = {k: v for k, v in task.meta.items() if not k.endswith("_tokenizer")}
    assert [t.kind for t in old.tokenizers] == ["word", "word"]
    assert old.tokenizers[1].tokenize("vingt-et-un, x") == ["vingt", HYPHEN, "et", HYPHEN, "un,", "x"]


def test_predict_from_the_command_line(run):
    run_dir, _ = run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rnnkit", "predict", str(run_dir), "two hundred and five"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["translation"] == "deux cent cinq"


def test_attention_heatmap(run, tmp_path):
    path = plot_attention(rnnkit.load(run[0]), "three hundred and twelve", tmp_path / "attention.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- user files ------------------------------------------------------------------------------

def _write_tsv(path, pairs) -> None:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in zip(*pairs)), encoding="utf-8")


def test_training_and_evaluating_on_tsv_files(run, tmp_path):
    pairs = number_pairs(range(0, 300))
    _write_tsv(tmp_path / "train.tsv", pairs)
    _write_tsv(tmp_path / "test.tsv", number_pairs(range(300, 320)))
    options = TranslateOptions(data=str(tmp_path / "train.tsv"), test_data=str(tmp_path / "test.tsv"),
                               embedding_dim=8, hidden_size=8, beam_size=2)
    task = TranslateTask(options)
    data = task.prepare(seed=0)
    assert task.meta["sizes"] == {"train": 270, "val": 30, "test": 20}
    assert task.meta["examples"]["test"] == ["three hundred", "trois cents"]
    assert "exact_match_range" not in task.metrics({"loss_sum": 1.0, "count": 1, "sentences": 2, "exact": 1,
                                                    **{f"{p}{k}": v for p in ("", "greedy_")
                                                       for k, v in bleu_stats(["a"], ["a"]).items()},
                                                    "greedy_exact": 1, "range_sentences": 0})
    assert len(data["test"]) == 20
    # evaluate --data on a saved run: unknown words become <unk> and never match.
    _write_tsv(tmp_path / "more.tsv", (["two hundred and five", "zzz"], ["deux cent cinq", "zzz"]))
    metrics = evaluate(run[0], str(tmp_path / "more.tsv"))
    assert metrics["data_exact_match"] == 0.5


def test_a_malformed_tsv_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "bad.tsv").write_text("one\tun\ntwo deux\n", encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rnnkit", "train", "translate", "--data", str(tmp_path / "bad.tsv"),
                             "--out", str(tmp_path / "run"), "--no-progress"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"{tmp_path / 'bad.tsv'} line 2: expected a source and a target separated by one tab, got no tab" in result.stderr
    with pytest.raises(ValueError, match="too few pairs"):
        _write_tsv(tmp_path / "few.tsv", (["one", "two"], ["un", "deux"]))
        TranslateTask(TranslateOptions(data=str(tmp_path / "few.tsv"))).prepare(seed=0)


def test_no_attention_model_trains_a_step_and_has_no_heatmap(run, tmp_path):
    task = TranslateTask(TranslateOptions(**{**TINY, "attention": "none", "cell": "lstm"}))
    data = task.prepare(seed=0)
    model = task.build_model()
    batch = data["train"].take(list(range(8)))
    out = task.step(model, batch)
    out.loss_sum.backward()
    assert out.count == int((batch["target"][:, 1:] != 0).sum())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        stats = task.step(model, batch).stats
    assert stats["sentences"] == 8 and 0 <= stats["exact"] <= 8
