"""The synthesisers beside espeak-ng (flite, Festival), the held-out-engine split, a missing
engine skipped with one line, and augmented training data that are reproducible."""
import json
import logging
import shutil

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the speech data needs espeakng-loader")
librosa = pytest.importorskip("librosa", reason="the speech features need librosa")

from rnnkit.data.datasets import spoken_digits as sd  # noqa: E402
from rnnkit.data.datasets import synthesizers as syn  # noqa: E402

RATES = {"kal": 8000, "kal16": 16000, "awb": 16000, "rms": 16000, "slt": 16000,
         "kal_diphone": 16000, "ked_diphone": 16000, "cmu_us_slt_arctic_hts": 32000}


def need(engine):
    if not syn.engine_available(engine):
        pytest.skip(f"{engine} is not installed here ({syn._INSTALL[engine]})")


def median_f0(audio, rate):
    return float(np.median(librosa.yin(audio, fmin=60, fmax=500, sr=rate)))


@pytest.mark.parametrize("engine", ["flite", "festival"])
def test_every_voice_speaks_at_its_rate_and_faster_rates_are_shorter(engine):
    need(engine)
    voices = syn.ENGINE_VOICES[engine]
    slow = syn.synthesize(engine, [("one two three", v, 130, 50) for v in voices])
    fast = syn.synthesize(engine, [("one two three", v, 260, 50) for v in voices])
    for voice, (audio, rate), (quick, quick_rate) in zip(voices, slow, fast):
        assert rate == quick_rate == RATES[voice] and audio.dtype == np.float32
        assert 0.5 * rate < len(audio) < 5 * rate and np.abs(audio).max() > 0.05  # speech, not silence
        assert len(quick) < 0.8 * len(audio), voice  # twice the rate: clearly shorter
    again = syn.synthesize(engine, [("one two three", voices[0], 130, 50)])[0][0]
    np.testing.assert_array_equal(again, slow[0][0])  # deterministic


def test_pitch_moves_flite_and_festival_audio_by_the_promised_semitones():
    need("flite")
    (low, rate), (high, _) = syn.synthesize("flite", [("one two three four", "awb", 175, 25),
                                                      ("one two three four", "awb", 175, 75)])
    assert syn.pitch_semitones(25) == -2.0 and syn.pitch_semitones(75) == 2.0
    ratio = median_f0(high, rate) / median_f0(low, rate)
    assert abs(12 * np.log2(ratio) - 4.0) < 1.0  # 4 semitones apart, as measured by YIN


def test_bad_voice_and_text_are_refused():
    need("flite")
    with pytest.raises(ValueError, match="voice 'kal_diphone' is not a flite voice"):
        syn.synthesize("flite", [("one", "kal_diphone", 175, 50)])
    with pytest.raises(ValueError, match="text must be words of letters and spaces, got 'one\"; rm'"):
        syn.synthesize("festival", [('one"; rm', "kal_diphone", 175, 50)])
    with pytest.raises(ValueError, match="engine must be one of espeak, flite, festival, got 'sam'"):
        syn.synthesize("sam", [("one", "x", 175, 50)])


def test_a_missing_engine_is_skipped_with_one_line(monkeypatch, caplog):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "flite" else real_which(name))
    syn.engine_available.cache_clear()
    try:
        assert not syn.engine_available("flite")
        with pytest.raises(syn.EngineUnavailable, match=r"flite is not installed \(apt-get install flite\)"):
            syn.synthesize("flite", [("one", "kal", 175, 50)])
        config = sd.SpokenDigitsConfig(train_size=30, val_size=2, test_size=2, engines=("espeak", "flite"))
        with caplog.at_level(logging.WARNING):
            train = sd.make_utterances(config, "train")
        assert {u.engine for u in train} == {"espeak"}
        lines = [r.getMessage() for r in caplog.records if "flite" in r.getMessage()]
        assert lines == ["spoken digits: engine flite is not installed: its voices are left out of training"]
        held_out = sd.SpokenDigitsConfig(train_size=3, val_size=2, test_size=2, held_out_engine="flite")
        with pytest.raises(ValueError, match="held_out_engine flite is not installed here"):
            sd.make_utterances(held_out, "test")
    finally:
        syn.engine_available.cache_clear()


def test_held_out_engine_split_keeps_the_engine_out_of_training():
    need("flite")
    need("festival")
    config = sd.SpokenDigitsConfig(train_size=300, val_size=40, test_size=60, engines=("espeak", "flite"),
                                   held_out_engine="festival")
    train, val, test = (sd.make_utterances(config, s) for s in ("train", "val", "test"))
    assert {u.engine for u in train} == {"espeak", "flite"}
    assert 100 < sum(u.engine == "flite" for u in train) < 200  # engines drawn about equally often
    assert {u.engine for u in val} == {u.engine for u in test} == {"festival"}
    assert {u.voice for u in test} == set(syn.ENGINE_VOICES["festival"])
    assert [u.text for u in val] != [u.text for u in test[:40]]
    espeak_train = {u.voice for u in train if u.engine == "espeak"}
    assert espeak_train <= set(sd.voice_split()["train"])
    # the espeak-only default draws exactly what it drew before engines existed
    plain = sd.SpokenDigitsConfig(train_size=20, val_size=2, test_size=2, seed=3)
    assert all(u.engine == "espeak" for u in sd.make_utterances(plain, "train"))


@pytest.mark.parametrize("changes, words", [
    (dict(engines=("espeak", "sam")), r"engines must be one or more of espeak, flite, festival \(no repeats\), "
                                      r"got \['espeak', 'sam'\]"),
    (dict(engines=("espeak",), held_out_engine="espeak"), "held_out_engine must be one of .* not among engines"),
    (dict(engines=("flite",)), "without held_out_engine, .* engines must include espeak, got \\['flite'\\]"),
    (dict(augment=("noise", "echo")), r"augment must be some of speed, pitch, reverb, noise, telephone"),
])
def test_config_rejects_bad_engines_and_augmentations(changes, words):
    with pytest.raises(ValueError, match=f"SpokenDigitsConfig: {words}"):
        sd.SpokenDigitsConfig(**changes)


def test_augmented_multi_engine_data_are_cached_and_reproducible(tmp_path):
    need("flite")
    need("festival")
    config = sd.SpokenDigitsConfig(train_size=8, val_size=2, test_size=3, max_digits=3, seed=2,
                                   engines=("espeak", "flite"), held_out_engine="festival",
                                   augment=("speed", "noise", "telephone"))
    first = sd.load_spoken_digits(config, tmp_path, workers=2)
    (folder,) = list(tmp_path.iterdir())
    channels = json.loads((folder / "channels.json").read_text())
    assert len(channels["train"]) == 8 and channels["val"] == [{}] * 2 and channels["test"] == [{}] * 3
    assert any(c for c in channels["train"])  # something was drawn
    assert {u.engine for u in first["test"].utterances} == {"festival"}
    made = sd.synthesize_features(first["train"].utterances, 40, workers=1, seed=0, augment=config.augment,
                                  augment_seed=config.seed)
    np.testing.assert_array_equal(made.features, first["train"].features)  # the same channels, the same frames
    assert made.channels == channels["train"]
    clean = sd.synthesize_features(first["train"].utterances, 40, workers=1, seed=0)
    assert not np.array_equal(clean.features, made.features) and clean.channels == [{}] * 8
