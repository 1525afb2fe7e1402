"""speech: labels and batches, a falling CTC loss on synthesised digits, and a saved run that
transcribes WAV files (any rate, mono or stereo) from Python and the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("espeakng_loader", reason="the speech data needs espeakng-loader")
pytest.importorskip("librosa", reason="the speech features need librosa")
sf = pytest.importorskip("soundfile", reason="reading audio needs soundfile")

import rnnkit  # noqa: E402
from rnnkit.data.datasets import spoken_digits as sd  # noqa: E402
from rnnkit.models.ctc import ctc_greedy_decode, ctc_prefix_beam_search  # noqa: E402
from rnnkit.tasks.speech import SpeechOptions, SpeechTask, min_ctc_steps, speech_tokens  # noqa: E402
from rnnkit.training import TrainConfig  # noqa: E402
from rnnkit.runs import train  # noqa: E402

# Short utterances (1-2 digits), word labels, a small model: learns in a few seconds.
TINY = dict(train_size=240, val_size=40, test_size=40, min_digits=1, max_digits=2, labels="words",
            stack=4, hidden_size=48, num_layers=1, dropout=0.0)


def test_tokens_and_targets():
    chars = speech_tokens("chars")
    assert chars[0] == "<blank>" and chars[1] == " " and "".join(chars[2:]) == "efghinorstuvwxz"
    assert speech_tokens("words") == ["<blank>", *sd.DIGIT_WORDS]
    task = SpeechTask(SpeechOptions())
    task.meta = {"tokens": chars, "labels": "chars", "n_mels": 40}
    ids = task._targets("Three  one", "here")
    assert task.to_text(ids) == "three one" and ids[5] == 1  # the space
    assert min_ctc_steps(task._targets("three", "here")) == 6  # "ee" needs a blank between
    with pytest.raises(ValueError, match=r"speech: here: text 'three 4' must be digit words .* unknown \['4'\]"):
        task._targets("three 4", "here")


@pytest.mark.parametrize("field, value, words", [
    ("labels", "phones", "labels must be one of chars, words, got 'phones'"),
    ("decoder", "viterbi", "decoder must be one of greedy, beam"),
    ("stack", 0, "stack must be an int >= 1, got 0"),
    ("max_digits", 1, "max_digits must be >= min_digits, got 1 < 2"),
])
def test_options_reject_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"SpeechOptions: {words}"):
        SpeechOptions(**{field: value})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    options = SpeechOptions(cache_dir=str(root / "cache"), **TINY)
    config = TrainConfig(epochs=10, batch_size=16, lr=1e-2, schedule="cosine", seed=0)
    summary = train("speech", options, config, root / "run", progress=False)
    return root, summary


def test_batches_pad_frames_and_targets():
    task = SpeechTask(SpeechOptions(**TINY))
    task.meta = {"tokens": speech_tokens("words"), "labels": "words", "n_mels": 2}
    feats = np.arange(20, dtype=np.float16).reshape(10, 2)  # three utterances of 3, 5 and 2 frames
    data = task._encode(feats, np.array([3, 5, 2]), ["one", "two one", "nine"], "here")
    batch = data.take([2, 1])
    assert batch["x"].shape == (2, 5, 2) and batch["lengths"].tolist() == [2, 5]
    assert torch.equal(batch["x"][0, :2], torch.tensor(feats[8:10], dtype=torch.float32))
    assert bool((batch["x"][0, 2:] == 0).all())
    assert torch.equal(batch["x"][1], torch.tensor(feats[3:8], dtype=torch.float32))
    assert batch["targets"].tolist() == [[10, 0], [3, 2]] and batch["target_lengths"].tolist() == [1, 2]


def test_the_loss_really_falls_and_transcripts_come_out(run):
    root, summary = run
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < 0.25 * losses[0]
    val = [r["val_wer"] for r in records if r["split"] == "val"]
    assert val[0] > 0.9 and min(val) < 0.6  # from nothing right to most words right (held-out voices)
    assert summary["test_wer"] < 0.6 and summary["test_cer"] < summary["test_wer"] + 0.2
    for key in ("test_loss", "test_cer", "test_wer", "val_wer", "best_val_wer"):
        assert key in summary
    assert (root / "run" / "plots" / "wer.png").exists() and (root / "run" / "plots" / "loss.png").exists()


def test_beam_of_one_agrees_with_greedy_where_the_trained_model_is_sure(run):
    """Where every frame's top label has probability >= 0.75 (tests/models/test_ctc.py), a beam of
    one must read what greedy decoding reads; a trained model is that sure on many utterances."""
    root, _ = run
    model = rnnkit.load(root / "run")
    data = model.task.prepare(seed=0)["test"]
    batch = data.take(list(range(len(data))))
    with torch.no_grad():
        out = model(batch["x"], batch["lengths"])
    sure = 0
    for lp, n in zip(out.log_probs, out.lengths.tolist()):
        if bool((lp[:n].exp().amax(-1) >= 0.75).all()):
            sure += 1
            assert list(ctc_prefix_beam_search(lp[:n], beam_size=1)[0].labels) == ctc_greedy_decode(lp[:n])
    assert sure >= 5


def _wav(path, text, voice, rate, channels=1):
    audio = sd.Espeak.get().synthesize(text, voice).astype(np.float32) / 32768
    audio = sd.resample(audio, sd.ESPEAK_RATE, rate)
    sf.write(path, np.stack([audio] * channels, axis=1), rate, subtype="PCM_16")


def test_a_run_transcribes_wav_files_at_any_rate(run):
    root, _ = run
    model = rnnkit.load(root / "run")
    paths = []
    for rate, channels in ((16000, 1), (44100, 2), (8000, 1)):
        path = root / f"seven_{rate}_{channels}.wav"
        _wav(path, "seven", "en-us", rate, channels)
        paths.append(str(path))
    rows = model.predict(paths)
    assert [r["input"] for r in rows] == paths
    for row in rows:
        assert set(row) == {"input", "text", "frames"} and set(row["text"].split()) <= set(sd.DIGIT_WORDS)
    assert rows[0]["text"] == rows[1]["text"]  # stereo at 44.1 kHz reads as mono at 16 kHz
    # What predict says is what the model decodes from the file's features.
    audio, rate = sd.read_audio(paths[1])
    feats = torch.from_numpy(sd.audio_features(audio, rate))
    out = model(feats[None], torch.tensor([len(feats)]))
    assert model.task.decode(out.log_probs, out.lengths)[0] == rows[1]["text"]
    with pytest.raises(ValueError, match="speech: predict needs at least one INPUT"):
        model.predict([])


def test_predict_names_a_file_that_is_not_audio(run, tmp_path):
    root, _ = run
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav is not a readable audio file"):
        rnnkit.load(root / "run").predict([str(tmp_path / "empty.wav")])


def test_predict_and_errors_from_the_command_line(run, tmp_path):
    root, _ = run
    _wav(tmp_path / "two.wav", "two", "en", 22050)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rnnkit", "predict", str(root / "run")]
    result = subprocess.run(command + [str(tmp_path / "two.wav")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["input"] == str(tmp_path / "two.wav") and set(row["text"].split()) <= set(sd.DIGIT_WORDS)
    (tmp_path / "notes.wav").write_text("not audio")
    result = subprocess.run(command + [str(tmp_path / "notes.wav")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "notes.wav is not a readable audio file" in result.stderr


def test_evaluate_on_a_table_of_recordings(run, tmp_path):
    from rnnkit.runs import evaluate

    root, _ = run
    _wav(tmp_path / "a.wav", "one four", "en", 16000)
    _wav(tmp_path / "b.wav", "nine", "en-us", 22050, channels=2)
    (tmp_path / "set.csv").write_text("path,text\na.wav,one four\nb.wav,nine\n")
    metrics = evaluate(root / "run", str(tmp_path / "set.csv"))
    assert {"data_loss", "data_cer", "data_wer"} <= set(metrics) and 0.0 <= metrics["data_wer"] <= 2.0
    (tmp_path / "odd.csv").write_text("path,text\na.wav,one for\n")
    with pytest.raises(ValueError, match=r"odd.csv row 1: text 'one for' must be digit words .*unknown \['for'\]"):
        evaluate(root / "run", str(tmp_path / "odd.csv"))
    (tmp_path / "gone.csv").write_text("path,text\nmissing.wav,one\n")
    with pytest.raises(ValueError, match="missing.wav does not exist"):
        evaluate(root / "run", str(tmp_path / "gone.csv"))


@pytest.mark.parametrize("field, value, words", [
    ("engines", "espeak,sam", r"engines must be one or more of espeak, flite, festival \(no repeats\)"),
    ("held_out_engine", "espeak", "held_out_engine must be one of espeak, flite, festival not among engines"),
    ("augment", "noise,echo", "augment must be some of speed, pitch, reverb, noise, telephone"),
])
def test_options_reject_bad_engines_and_channels(field, value, words):
    with pytest.raises(ValueError, match=f"SpeechOptions: {words}"):
        SpeechOptions(**{field: value})


def test_options_name_engines_and_channels_as_lists():
    from rnnkit.data.audio_augment import AUGMENTATIONS

    config = SpeechOptions(engines="espeak, flite", held_out_engine="festival", augment="all").data_config()
    assert config.engines == ("espeak", "flite") and config.held_out_engine == "festival"
    assert config.augment == AUGMENTATIONS
    assert SpeechOptions(augment="noise,telephone").data_config().augment == ("noise", "telephone")
    assert SpeechOptions().data_config().augment == () and SpeechOptions().data_config().engines == ("espeak",)
    task = SpeechTask(SpeechOptions(normalize=False))
    task.meta = {"tokens": speech_tokens("words"), "labels": "words", "n_mels": 40}
    assert task.build_model().config.normalize is False and SpeechTask(SpeechOptions()).options.normalize


def test_a_held_out_engine_run_with_every_channel_predicts_and_streams(tmp_path):
    """Trained on espeak + flite through random channels and SpecAugment, validated and tested on
    Festival: the run records the split, reads 8 kHz and 16 kHz files alike, and the streaming
    CTC decoder reads what greedy decoding reads."""
    from rnnkit.data.datasets import synthesizers as syn
    from rnnkit.streaming import CTCStreamDecoder

    for engine in ("flite", "festival"):
        if not syn.engine_available(engine):
            pytest.skip(f"{engine} is not installed here ({syn._INSTALL[engine]})")
    options = SpeechOptions(cache_dir=str(tmp_path / "cache"), engines="espeak,flite", held_out_engine="festival",
                            augment="all", spec_augment=True, max_frequency=3800.0, **{**TINY, "train_size": 48, "test_size": 6,
                                                                 "val_size": 6})
    summary = train("speech", options, TrainConfig(epochs=1, batch_size=16, lr=1e-2, seed=0), tmp_path / "run",
                    progress=False)
    assert summary["steps"] == 3 and np.isfinite(summary["test_loss"])
    model = rnnkit.load(tmp_path / "run")
    voices = json.loads((tmp_path / "run" / "preprocess.json").read_text())["voices"]
    assert model.task.meta["max_frequency"] == 3800.0
    assert set(voices["train"]) == {"espeak", "flite"} and set(voices["val"]) == set(voices["test"]) == {"festival"}
    audio, rate = syn.synthesize("festival", [("three eight", "ked_diphone", 175, 50)])[0]
    paths = []
    for target in (8000, 16000):
        paths.append(tmp_path / f"festival_{target}.wav")
        sf.write(paths[-1], sd.resample(audio, rate, target), target, subtype="PCM_16")
    rows = model.predict([str(p) for p in paths])
    assert [r["frames"] for r in rows][0] == pytest.approx(rows[1]["frames"], abs=1)  # 10 ms frames either way
    for path, row in zip(paths, rows):
        file_audio, file_rate = sd.read_audio(path)
        feats = torch.from_numpy(sd.audio_features(file_audio, file_rate, fmax=3800.0))  # the run's bands
        out = model(feats[None], torch.tensor([len(feats)]))
        assert model.task.decode(out.log_probs, out.lengths)[0] == row["text"]
        decoder = CTCStreamDecoder(model.task.meta["tokens"])
        for chunk in out.log_probs[0].split(3):  # frames as they would arrive
            decoder.feed(chunk)
        assert decoder.ids == ctc_greedy_decode(out.log_probs[0])
