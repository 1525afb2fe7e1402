"""music: the chorale encoding and its round trip, the corpus cache, a tiny run on real chorales
(a falling loss, the n-gram baseline, predict, evaluate --data, generate to MIDI + piano roll,
ONNX export) and the one-line errors."""
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

music21 = pytest.importorskip("music21")

from music21 import chord, corpus, note, stream  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.cli import main as cli_main  # noqa: E402
from rnnkit.data.datasets.chorales import (HOLD, REST, decode_tokens, encode_score, key_tonic,  # noqa: E402
                                           load_bach_chorales, load_music_folder, opening_chord, voice_notes)
from rnnkit.exporting import export_onnx  # noqa: E402
from rnnkit.runs import evaluate, train  # noqa: E402
from rnnkit.tasks.music import MusicOptions, MusicTask  # noqa: E402
from rnnkit.training import TrainConfig  # noqa: E402

N_FILES = 16  # the first corpus files: about 13 four-part chorales, the rest skipped


def _part(events):
    """A part from (quarter length, MIDI pitch | None for a rest | tuple for a chord, tie)."""
    part = stream.Part()
    for length, pitch, *tie in events:
        if pitch is None:
            n = note.Rest(quarterLength=length)
        elif isinstance(pitch, tuple):
            n = chord.Chord(list(pitch), quarterLength=length)
        else:
            n = note.Note(midi=pitch, quarterLength=length)
        if tie:
            n.tie = music21.tie.Tie(tie[0])
        part.append(n)
    return part


def test_encoding_grid_holds_rests_ties_chords_and_sixteenths():
    score = stream.Score()
    score.insert(0, _part([(1.5, 72), (0.25, 74), (0.25, 76), (2.0, 77)]))  # dotted eighth, two sixteenths
    score.insert(0, _part([(1.0, 67, "start"), (1.0, 67, "stop"), (1.0, None), (1.0, (64, 69))]))  # tie, rest, chord
    score.insert(0, _part([(4.0, 60)]))
    score.insert(0, _part([(2.0, (43, 48)), (2.0, 41)]))  # a chord in the bass keeps its lowest note
    tokens = encode_score(score)
    assert len(tokens) == 8 * 4  # 4 quarter notes = 8 eighth-note steps, 4 voices each
    soprano, alto, tenor, bass = (tokens[v::4] for v in range(4))
    # 1.5 + 0.25 + 0.25: the first sixteenth takes step 3, the second only holds it on
    assert soprano == ["72", HOLD, HOLD, "74", "77", HOLD, HOLD, HOLD]
    assert alto == ["67", HOLD, HOLD, HOLD, REST, REST, "69", HOLD]  # tie merged; chord: highest in the alto
    assert tenor == ["60"] + [HOLD] * 7
    assert bass == ["43", HOLD, HOLD, HOLD, "41", HOLD, HOLD, HOLD]
    # decoding gives a score that encodes to the same tokens
    again = decode_tokens(tokens)
    assert len(again.parts) == 4 and encode_score(again) == tokens
    assert [n.pitch for n in voice_notes(tokens)[0]] == [72, 74, 77]
    with pytest.raises(ValueError, match="has 3 parts, expected 4"):
        encode_score(stream.Score([_part([(1.0, 60)]) for _ in range(3)]))


def test_keys_and_their_opening_chords():
    assert key_tonic("G major") == (7, "major") and key_tonic("e minor") == (4, "minor")
    assert key_tonic("Bb") == (10, "major") and key_tonic("f#") == (6, "minor") and key_tonic("B- major")[0] == 10
    assert opening_chord("C major") == ["72", "64", "55", "48"]  # C5 E4 G3 C3
    assert opening_chord("e minor") == ["76", "67", "59", "52"]  # E5 G4 B3 E3
    for bad in ("H major", "G dorian", "", "C# major minor"):
        with pytest.raises(ValueError, match="key must be a tonic and a mode"):
            key_tonic(bad)


def test_the_corpus_is_parsed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    pieces = load_bach_chorales(cache_dir=tmp_path, limit=6)
    cached = json.loads(next(tmp_path.glob("chorales-v1-first6.json")).read_text())
    assert [p["name"] for p in cached["pieces"]] == [p.name for p in pieces] and len(pieces) >= 3
    assert all(len(p.tokens) % 4 == 0 and len(p.tokens) > 100 for p in pieces)
    monkeypatch.setattr(music21.converter, "parse", lambda *a, **k: pytest.fail("parsed again"))
    assert load_bach_chorales(cache_dir=tmp_path, limit=6) == pieces


# -- a tiny run on real chorales ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("music")
    folder = tmp / "chorales"
    folder.mkdir()
    for path in sorted(corpus.getComposer("bach"), key=lambda p: Path(p).name)[:N_FILES]:
        shutil.copy(path, folder / Path(path).name)
    (folder / "broken.xml").write_text("<score-partwise>not music")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNKIT_CACHE", str(tmp / "cache"))
        options = MusicOptions(data=str(folder), embedding_dim=16, hidden_size=48, num_layers=1, dropout=0.0,
                               window=64, max_shift=2, holdout=0.15)
        config = TrainConfig(epochs=6, batch_size=8, lr=1e-2, schedule="constant", log_every=5, seed=0)
        summary = train("music", options, config, tmp / "run", progress=False)
        yield tmp, folder, tmp / "run", summary


def test_skipped_files_are_counted_and_an_empty_folder_is_an_error(tiny, tmp_path, caplog):
    _, folder, _, _ = tiny
    with caplog.at_level(logging.WARNING, logger="rnnkit.data.datasets.chorales"):
        pieces = load_music_folder(folder, cache_dir=tmp_path)
    assert 8 <= len(pieces) < N_FILES and "broken.xml" not in {p.name for p in pieces}
    assert f"skipped {N_FILES + 1 - len(pieces)} of {N_FILES + 1} files" in caplog.text
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "junk.mid").write_bytes(b"MThd nothing")
    with pytest.raises(ValueError, match="no usable four-part piece in .*empty"):
        load_music_folder(tmp_path / "empty", cache_dir=tmp_path)


def test_the_split_is_by_piece_and_only_training_is_transposed(tiny):
    _, folder, _, _ = tiny
    task = MusicTask(MusicOptions(data=str(folder), window=64, max_shift=2, holdout=0.15))
    splits = task.prepare(seed=3)
    assert [len(s.raw) for s in (splits["val"], splits["test"])] == [2, 2]
    assert sorted(map(tuple, sum((s.raw for s in splits.values()), []))) == sorted(
        tuple(task._ids(p.tokens)) for p in task._pieces())  # every piece in exactly one split
    ids = splits["train"].tensors["ids"][:8]
    torch.manual_seed(0)
    moved = task._transpose(ids)
    first = task.meta["first_pitch"]
    pitch = ids >= first
    assert torch.equal(moved[~pitch], ids[~pitch])
    shifts = [set((moved[i] - ids[i])[pitch[i]].tolist()) for i in range(len(ids))]
    assert all(len(s) == 1 and abs(s.pop()) <= 2 for s in shifts)  # one shift per window, within max_shift
    assert int(moved.max()) < len(task.vocab)


def test_loss_falls_and_the_ngram_baseline_is_in_the_summary(tiny):
    _, _, run_dir, summary = tiny
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if "train_loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    vocab_size = len(rnnkit.load(run_dir).task.vocab)
    assert summary["test_nll"] < 0.6 * math.log(vocab_size)
    saved = json.loads((run_dir / "summary.json").read_text())
    keys = [k for k in saved if k.startswith("baseline_") and k.endswith("gram_test_nll")]
    assert len(keys) == 1 and 0 < saved[keys[0]] < math.log(vocab_size)


def test_predict_matches_evaluate_on_the_same_piece(tiny, tmp_path, capsys):
    _, folder, run_dir, _ = tiny
    piece = sorted(folder.glob("*.mxl"))[1]
    assert cli_main(["predict", str(run_dir), str(piece)]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["tokens"] == 4 * row["steps"] and row["tokens"] > 100
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(piece, one / piece.name)
    assert evaluate(run_dir, str(one))["data_nll"] == pytest.approx(row["nll_per_token"], rel=1e-4)
    assert cli_main(["evaluate", str(run_dir), "--data", str(folder)]) == 0
    assert "data_nll:" in capsys.readouterr().out


def test_generate_writes_midi_and_a_piano_roll(tiny, tmp_path, capsys):
    _, _, run_dir, _ = tiny
    out = tmp_path / "chorale.mid"
    argv = ["generate", str(run_dir), "--prime", "G major", "--bars", "2", "--seed", "1", "--out", str(out)]
    assert cli_main(argv) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].split() == ["1.1", "G4", "B3", "D3", "G2"]  # the tonic chord the prime asked for
    assert len(lines) == 1 + 2 * 8 + 1 and lines[-1].startswith(f"wrote {out}")
    assert out.stat().st_size > 100 and (tmp_path / "chorale.png").read_bytes()[:4] == b"\x89PNG"
    score = music21.converter.parse(str(out))
    assert len(score.parts) == 4
    assert cli_main(argv) == 0 and capsys.readouterr().out == text  # the same seed, the same chorale
    assert cli_main(["generate", str(run_dir), "--prime-bars", "1", "--bars", "1", "--seed", "2"]) == 0
    primed = capsys.readouterr().out.splitlines()
    task = rnnkit.load(run_dir).task
    test_piece = {p.name: p for p in task._pieces()}[task.meta["test_pieces"][0]]
    assert primed[0].split()[1] == _name(test_piece.tokens[0]) and len(primed) == 16


def _name(token):
    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{names[int(token) % 12]}{int(token) // 12 - 1}"


def test_the_model_exports_to_onnx(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    _, _, run_dir, _ = tiny
    results = export_onnx(run_dir, tmp_path / "music.onnx")
    assert results and all(r.max_abs_diff <= 1e-4 for r in results)


@pytest.mark.parametrize("argv, message", [
    (["generate", "{run}", "--prime", "H major"], "key must be a tonic and a mode"),
    (["generate", "{run}", "--prime", "C", "--prime-bars", "1"], "exclude each other"),
    (["generate", "{run}", "--out", "x.wav"], "out must end in"),
    (["predict", "{run}", "{missing}"], "does not exist"),
    (["train", "music", "--data", "{missing}"], "neither a music file nor a folder"),
    (["train", "music", "--window", "30"], "window must be a multiple of 4"),
])
def test_bad_input_is_one_line(tiny, tmp_path, capsys, argv, message):
    _, _, run_dir, _ = tiny
    argv = [a.format(run=run_dir, missing=tmp_path / "missing.mid") for a in argv]
    assert cli_main(argv + (["--out", str(tmp_path / "r")] if argv[0] == "train" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
