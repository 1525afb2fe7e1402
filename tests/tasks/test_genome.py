"""genome: the splice data decode to the documented nucleotides, the fetch says how when it cannot,
FASTA reading and its errors, the grouped stratified split, and a run trained on a slice of the
real splice windows (loss falls, predict, evaluate --data, export, baselines, one-line errors)."""
import json
import math
import stat
from collections import Counter

import pytest

import rnnkit
from rnnkit.cli import main as cli_main
from rnnkit.data.datasets import splice
from rnnkit.data.datasets.splice import decode_statlog_bits, fetch_splice, load_splice, parse_fasta, read_fasta
from rnnkit.runs import evaluate, train
from rnnkit.tasks.genome import GenomeOptions, central, stratified_split
from rnnkit.training import TrainConfig


@pytest.fixture(scope="module")
def dna():
    """The real splice windows, or a skip saying why they are not here."""
    try:
        return load_splice()
    except ValueError as e:
        pytest.skip(f"the splice data is not installed and cannot be fetched: {e}")


def _write_fasta(path, records, style="tag") -> str:
    with open(path, "w", encoding="utf-8") as f:
        for k, (sequence, label) in enumerate(records):
            f.write(f">s{k} label={label}\n" if style == "tag" else f">s{k}|{label}\n")
            f.write(sequence[:30] + "\n" + sequence[30:] + "\n")  # wrapped lines
    return str(path)


def _slice(dna, per_class: int, offset: int = 0) -> list[tuple[str, str]]:
    """``per_class`` real windows of each class, from the ``offset``-th of that class on."""
    by_class: dict[str, list[str]] = {}
    for sequence, label in zip(dna.sequences, dna.labels):
        by_class.setdefault(label, []).append(sequence)
    return [(s, label) for label in sorted(by_class) for s in by_class[label][offset:offset + per_class]]


# -- the splice data --------------------------------------------------------------------------

def test_the_rda_decodes_to_the_documented_nucleotides(dna):
    assert len(dna.sequences) == 3186 and Counter(dna.labels) == {"n": 1654, "ei": 767, "ie": 765}
    assert {len(s) for s in dna.sequences} == {60} and set("".join(dna.sequences)) == set("ACGT")
    # The splice consensus where the documented code puts it: GT right after a donor junction
    # (positions 31-32), AG right before an acceptor junction (29-30); far rarer elsewhere.
    share = lambda label, at, pair: sum(s[at:at + 2] == pair for s, y in zip(dna.sequences, dna.labels)  # noqa: E731
                                        if y == label) / Counter(dna.labels)[label]
    assert share("ei", 30, "GT") > 0.98 and share("ie", 28, "AG") > 0.98
    assert share("n", 30, "GT") < 0.2 and share("n", 28, "AG") < 0.2


def test_statlog_bits_decode_and_refuse_two_bits_set():
    assert decode_statlog_bits([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]) == "ACGT"
    with pytest.raises(ValueError, match=r"row 7: position 2 has bits \(1, 1, 0\), which is no nucleotide"):
        decode_statlog_bits([0, 0, 0, 1, 1, 0], "row 7")


def test_the_fetch_without_apt_get_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(splice.shutil, "which", lambda name: None)
    with pytest.raises(ValueError) as error:
        fetch_splice(tmp_path / "cache")
    message = str(error.value)
    assert "no apt-get and no dpkg-deb" in message and "apt-get download r-cran-mlbench" in message
    assert "python -m rnnkit.data.datasets.splice" in message and "--data FILE.fasta" in message
    assert "\n" not in message


def test_a_failing_apt_get_is_one_clear_error(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "dpkg-deb"):
        script = bin_dir / name
        script.write_text("#!/bin/sh\necho 'E: Unable to locate package r-cran-mlbench' >&2\nexit 100\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ValueError, match=r"`apt-get download` failed: E: Unable to locate package .*--data FILE.fasta"):
        fetch_splice(tmp_path / "cache")
    assert not (tmp_path / "cache" / "DNA.rda").exists()


def test_the_cache_folder_follows_rnnkit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    assert splice.splice_cache_dir() == tmp_path / "mlbench"
    (tmp_path / "mlbench").mkdir()
    (tmp_path / "mlbench" / "DNA.rda").write_bytes(b"x")
    assert fetch_splice() == tmp_path / "mlbench" / "DNA.rda"  # found: nothing is fetched


# -- FASTA ------------------------------------------------------------------------------------

def test_fasta_reads_both_label_conventions_wrapped_lines_and_comments(tmp_path):
    path = tmp_path / "a.fa"
    path.write_text("; a comment\n>one label=ei some description\nacgt\nAC GT\n\n>two|n\nMKV*\n>x|y label=ie\nA-C\n")
    records = read_fasta(path)
    assert records.names == ["one", "two", "x|y"]
    assert records.sequences == ["ACGTACGT", "MKV*", "A-C"] and records.labels == ["ei", "n", "ie"]


@pytest.mark.parametrize("content, line, words", [
    ("ACGT\n>a|n\nAC\n", 1, "a sequence line before the first >header"),
    (">a|n\nAC\n>b\nAC\n", 3, "header 'b' has no label; write >id label=LABEL or >id|LABEL"),
    (">a|n\nAC\n>b|n\n\n>c|ei\nA\n", 3, "record 'b' has no sequence"),
    (">a|n\nAC\nAC1T\n", 3, "symbol '1' is not a letter"),
    (">a|\nAC\n", 1, "header 'a|' has an empty label"),
])
def test_bad_fasta_names_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"bad.fa line {line}: {words}"):
        read_fasta(path)
    with pytest.raises(ValueError, match="holds no records"):
        parse_fasta("; only a comment\n", "empty.fa")


# -- split and options ----------------------------------------------------------------------------

def test_the_split_is_stratified_seeded_and_keeps_duplicates_together():
    sequences = [f"S{k}" for k in range(300)] + ["DUP"] * 20
    labels = ["a" if k % 3 else "b" for k in range(300)] + ["a"] * 20
    train_i, val_i, test_i = stratified_split(sequences, labels, (0.1, 0.2), seed=0)
    assert sorted(train_i + val_i + test_i) == list(range(320))
    for part in (train_i, val_i, test_i):
        assert len({sequences[i] for i in part} & {"DUP"}) == 0 or all(
            sequences[i] != "DUP" for i in set(range(320)) - set(part))  # all 20 copies in one part
    b = [i for i in range(320) if labels[i] == "b"]
    assert sum(labels[i] == "b" for i in test_i) == round(0.2 * len(b))  # per-label fractions
    assert stratified_split(sequences, labels, (0.1, 0.2), seed=0) == (train_i, val_i, test_i)
    assert stratified_split(sequences, labels, (0.1, 0.2), seed=1)[2] != test_i


def test_central_and_options():
    assert central("ABCDEF", 3) == "BCD" and central("ABC", 5) == "ABC" and central("ABC", 0) == "ABC"
    for field, value, words in [("window", -2, "window must be an int >= -1"), ("pooling", "sum", "pooling must be one"),
                                ("test_fraction", 0.5, r"test_fraction must be in \(0, 0.5\)"),
                                ("symbol_dropout", 1.0, r"symbol_dropout must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=f"GenomeOptions: {words}"):
            GenomeOptions(**{field: value})


# -- a run on a slice of the real data ------------------------------------------------------------

TINY = dict(embedding_dim=8, hidden_size=24, dropout=0.0, symbol_dropout=0.0, window=20, kmer_max=2)


@pytest.fixture(scope="module")
def run(dna, tmp_path_factory):
    root = tmp_path_factory.mktemp("genome")
    data = _write_fasta(root / "splice.fa", _slice(dna, 150))
    summary = train("genome", GenomeOptions(data=data, **TINY), TrainConfig(epochs=8, batch_size=16, lr=0.01, seed=0),
                    root / "run", progress=False)
    return root, summary


def test_the_loss_really_falls_and_baselines_are_in_the_summary(run):
    root, summary = run
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert train_losses[0] == pytest.approx(math.log(3), abs=0.15)  # chance at the start
    assert train_losses[-1] < 0.6 * math.log(3)
    assert summary["test_accuracy"] > 0.55  # chance: 1/3
    saved = json.loads((root / "run" / "summary.json").read_text())
    for name in ("majority", "kmer_lr", "onehot_lr"):  # equal lengths: the one-hot baseline too
        assert 0.0 <= saved[f"baseline_{name}_test_accuracy"] <= 1.0
    assert saved["baseline_majority_test_accuracy"] == pytest.approx(1 / 3, abs=0.02)  # balanced slice
    preprocess = json.loads((root / "run" / "preprocess.json").read_text())
    assert preprocess["labels"] == ["ei", "ie", "n"] and preprocess["window"] == 20
    assert sorted(preprocess["vocab"]["tokens"]) == ["A", "C", "G", "T"]


def test_predict_in_python_and_on_the_command_line(run, dna, capsys):
    root, _ = run
    model = rnnkit.load(root / "run")
    donors = [s for s, y in zip(dna.sequences, dna.labels) if y == "ei"][-20:]  # beyond the training slice
    rows = model.predict([d.lower() for d in donors] + ["ACGTNNACGT"])
    assert sum(r["label"] == "ei" for r in rows[:20]) >= 12
    for row in rows:
        assert set(row["probabilities"]) == {"ei", "ie", "n"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert rows[0]["input"] == donors[0].lower()
    assert cli_main(["predict", str(root / "run"), donors[0]]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["input"] == donors[0] and line["label"] in ("ei", "ie", "n")


def test_evaluate_on_a_fasta_file_and_unknown_labels(run, dna, tmp_path):
    root, _ = run
    data = _write_fasta(tmp_path / "more.fa", _slice(dna, 30, offset=400), style="bar")
    metrics = evaluate(root / "run", data)
    assert metrics["data_accuracy"] > 0.6 and "baseline_kmer_lr_data_accuracy" in metrics
    odd = _write_fasta(tmp_path / "odd.fa", [(dna.sequences[0], "exon")])
    with pytest.raises(ValueError, match=r"labels \['exon'\] that the model does not know"):
        evaluate(root / "run", odd)


def test_export_to_onnx_agrees(run, tmp_path):
    pytest.importorskip("onnxruntime")
    from rnnkit.exporting import export_onnx

    root, _ = run
    [info] = export_onnx(root / "run", tmp_path / "genome.onnx")
    assert info.max_abs_diff <= 1e-4 and list(info.inputs) == ["x", "lengths"]


def test_bad_input_is_one_line_on_the_command_line(run, tmp_path, capsys):
    root, _ = run
    bad = tmp_path / "bad.fa"
    bad.write_text(">a label=ei\nACGT\n>b\nACGT\n")
    assert cli_main(["train", "genome", "--data", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert "bad.fa line 3: header 'b' has no label" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert cli_main(["predict", str(root / "run"), "ACG7T"]) != 0
    err = capsys.readouterr().err.strip()
    assert "input 1 line 2: symbol '7' is not a letter" in err and len(err.splitlines()) == 1
