"""Spoken digits: the voice split, reproducible utterances and features, the espeak-ng binding,
audio reading (any rate, mono or stereo, malformed files) and log-mel features."""
import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the speech data needs espeakng-loader")
pytest.importorskip("librosa", reason="the speech features need librosa")
sf = pytest.importorskip("soundfile", reason="reading audio needs soundfile")

from rnnkit.data.datasets import spoken_digits as sd  # noqa: E402


# -- voices and utterances --------------------------------------------------------------------

def test_voice_split_holds_out_whole_accents_and_variants():
    split = sd.voice_split()
    train, val, test = (set(split[s]) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == len(sd.ACCENTS) * len(sd.VARIANTS)
    assert (len(train), len(val), len(test)) == (60, 24, 52)

    def parts(voice):
        accent, _, variant = voice.partition("+")
        return accent, variant

    for voice in test:
        accent, variant = parts(voice)
        assert accent in sd.TEST_ACCENTS or variant in sd.TEST_VARIANTS
    for voice in train:  # training never hears a held-out accent or variant
        accent, variant = parts(voice)
        assert accent not in sd.TEST_ACCENTS + sd.VAL_ACCENTS and variant not in sd.TEST_VARIANTS + sd.VAL_VARIANTS


def test_utterances_follow_the_config_and_its_seed():
    config = sd.SpokenDigitsConfig(train_size=50, val_size=5, test_size=40, min_digits=2, max_digits=4,
                                   min_rate=150, max_rate=200, seed=3)
    train = sd.make_utterances(config, "train")
    assert len(train) == 50 and train == sd.make_utterances(config, "train")  # deterministic
    assert train != sd.make_utterances(sd.SpokenDigitsConfig(**{**config.__dict__, "seed": 4}), "train")
    voices = set(sd.voice_split()["train"])
    for u in train:
        words = u.text.split()
        assert 2 <= len(words) <= 4 and set(words) <= set(sd.DIGIT_WORDS)
        assert u.voice in voices and 150 <= u.rate <= 200 and config.min_pitch <= u.pitch <= config.max_pitch
    assert {u.voice for u in sd.make_utterances(config, "test")} <= set(sd.voice_split()["test"])


@pytest.mark.parametrize("field, value, words", [
    ("train_size", 0, "train_size must be an int >= 1, got 0"),
    ("max_digits", 1, "max_digits must be >= min_digits"),
    ("max_rate", 500, r"rates must lie in \[80, 450\]"),
    ("max_pitch", 100, "max_pitch must be <= 99, got 100"),
])
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"SpokenDigitsConfig: {words}"):
        sd.SpokenDigitsConfig(**{field: value})


# -- espeak-ng --------------------------------------------------------------------------------

def test_espeak_speaks_longer_texts_longer_and_faster_rates_shorter():
    engine = sd.Espeak.get()
    one = engine.synthesize("one", "en-us")
    three = engine.synthesize("one two three", "en-us")
    fast = engine.synthesize("one two three", "en-us", rate=300)
    assert one.dtype == np.int16 and 0.2 * sd.ESPEAK_RATE < len(one) < 1.5 * sd.ESPEAK_RATE
    assert len(three) > 2 * len(one) and len(fast) < 0.8 * len(three)
    assert np.abs(three).max() > 1000  # not silence
    assert len(engine.synthesize("one two three", "en-gb-scotland+f2")) > 0
    with pytest.raises(ValueError, match="Espeak: voice 'xx-nowhere' is not an espeak-ng voice"):
        engine.synthesize("one", "xx-nowhere")


def test_data_are_cached_and_reproducible(tmp_path):
    config = sd.SpokenDigitsConfig(train_size=6, val_size=2, test_size=3, max_digits=3, seed=1)
    first = sd.load_spoken_digits(config, tmp_path, workers=2)
    (folder,) = [p for p in tmp_path.iterdir()]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["manifest.json", "channels.json"] + [f"{s}_{kind}.npy" for s in ("train", "val", "test") for kind in ("features", "lengths")])
    for name, n in (("train", 6), ("val", 2), ("test", 3)):
        part = first[name]
        assert len(part.utterances) == len(part.lengths) == n
        assert part.features.shape == (part.lengths.sum(), 40) and part.features.dtype == np.float16
        assert part.utterances == sd.make_utterances(config, name)
        # ~0.25-0.6 s per digit word at 130-260 words per minute: 10 ms frames
        words = np.array([len(u.text.split()) for u in part.utterances])
        assert bool(np.all(part.lengths > 15 * words)) and bool(np.all(part.lengths < 80 * words + 50))
    # Synthesised again in a fresh worker (what a cache miss does): identical features.
    made = sd.synthesize_features(first["train"].utterances, 40, workers=1, seed=0)
    np.testing.assert_array_equal(made.features, first["train"].features)
    np.testing.assert_array_equal(made.lengths, first["train"].lengths)
    again = sd.load_spoken_digits(config, tmp_path)  # from the cache
    np.testing.assert_array_equal(again["test"].features, first["test"].features)


# -- audio files ------------------------------------------------------------------------------

def _tone(freq, rate, seconds=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_audio_mixes_stereo_down_and_keeps_the_rate(tmp_path):
    left, right = _tone(440, 8000), _tone(660, 8000)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    audio, rate = sd.read_audio(tmp_path / "stereo.wav")
    assert rate == 8000 and audio.shape == left.shape and audio.dtype == np.float32
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-4)  # 16-bit rounding
    sf.write(tmp_path / "mono.flac", left, 44100)
    audio, rate = sd.read_audio(tmp_path / "mono.flac")
    assert rate == 44100 and audio.shape == left.shape


def test_resample_keeps_the_pitch():
    tone = _tone(440, 8000, seconds=1.0)
    up = sd.resample(tone, 8000, 16000)
    assert abs(len(up) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * 16000 / len(up) - 440) < 2


@pytest.mark.parametrize("content, words", [
    (b"", "is not a readable audio file"),  # an empty file
    (b"three one four one, not audio at all\n" * 20, "is not a readable audio file"),
])
def test_read_audio_rejects_files_that_are_not_audio(tmp_path, content, words):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"read_audio: {path} {words}"):
        sd.read_audio(path)


def test_read_audio_rejects_silent_and_missing_files(tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros((0, 1), np.float32), 16000)  # a valid header, no samples
    with pytest.raises(ValueError, match="none.wav holds no audio samples"):
        sd.read_audio(tmp_path / "none.wav")
    with pytest.raises(ValueError, match="missing.wav does not exist"):
        sd.read_audio(tmp_path / "missing.wav")


# -- features ---------------------------------------------------------------------------------

def _log_mel_reference(audio, rate, n_mels):
    """The same log-mel from numpy's FFT: centred (zero-padded) 25 ms Hann frames every 10 ms."""
    import librosa

    n_fft, hop = round(0.025 * rate), round(0.010 * rate)
    padded = np.pad(audio, n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = [padded[s : s + n_fft] * window for s in range(0, len(padded) - n_fft + 1, hop)]
    power = np.abs(np.fft.rfft(np.array(frames), axis=1)) ** 2  # (T, n_fft // 2 + 1)
    mel = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=20.0, fmax=rate / 2)  # (n_mels, bins)
    return np.log(power @ mel.T + 1e-6)


def test_log_mel_matches_a_numpy_reference():
    audio = sd.Espeak.get().synthesize("seven two", "en").astype(np.float32) / 32768
    audio = sd.resample(audio, sd.ESPEAK_RATE)
    feats = sd.log_mel(audio, 16000, 40)
    assert feats.shape == (1 + len(audio) // 160, 40) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, _log_mel_reference(audio, 16000, 40), atol=2e-3, rtol=1e-3)


def test_features_hardly_depend_on_the_recording_rate():
    audio = sd.Espeak.get().synthesize("three one four", "en-us").astype(np.float32) / 32768
    base = sd.audio_features(audio, sd.ESPEAK_RATE)
    for rate in (16000, 44100, 48000):
        other = sd.audio_features(sd.resample(audio, sd.ESPEAK_RATE, rate), rate)
        n = min(len(base), len(other))
        assert abs(len(base) - len(other)) <= 1
        loud = base[:n] > np.log(1e-4)  # compare where there is sound, not the silence floor
        assert np.median(np.abs(base[:n] - other[:n])[loud]) < 0.05


def test_max_frequency_keeps_every_band_below_it():
    tone = _tone(6000, 16000)  # above the telephone band
    wide, narrow = sd.log_mel(tone), sd.log_mel(tone, fmax=3800)
    assert wide.shape == narrow.shape == (1 + len(tone) // 160, 40)
    assert wide[5:-5, -8:].max() > np.log(1.0)  # the top bands of the full band hear it
    assert narrow[5:-5].max() < wide[5:-5].max() - 10  # none of the narrow bands does (> 10 nats down)
    # white noise recorded at 8 kHz: sound everywhere up to 4 kHz, nothing above
    noise = (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32)
    top_wide = np.median(sd.audio_features(noise, 8000)[5:-5, -1])  # a band above 4 kHz: empty
    top_narrow = np.median(sd.audio_features(noise, 8000, fmax=3800)[5:-5, -1])  # below 3.8 kHz: the noise
    assert top_wide < np.log(1e-5) and top_narrow > top_wide + 5
    with pytest.raises(ValueError, match=r"SpokenDigitsConfig: max_frequency must be in \[1000, 8000\] Hz, got 9000"):
        sd.SpokenDigitsConfig(max_frequency=9000.0)
