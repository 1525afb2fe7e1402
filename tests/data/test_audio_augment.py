"""rnnkit.data.audio_augment: each augmentation keeps its shape and rate contract, is
deterministic under a seed, and measurably does what it claims (pitch, SNR, band, decay)."""
import json
import shutil

import numpy as np
import pytest
import scipy.signal
import torch

from rnnkit.data import audio_augment as aa

RATE = 16000
N = RATE // 2  # 0.5 s: every test signal is short


def sine(freq: float, amp: float = 0.5, rate: int = RATE, n: int = N) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def voice(rate: int = RATE, n: int = N) -> np.ndarray:
    """A vowel-like harmonic complex: 150 Hz fundamental, falling harmonics, a 4 Hz syllable rhythm."""
    t = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20) if 150 * k < rate / 2)
    return (0.3 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) / np.abs(x).max()).astype(np.float32)


def peak_frequency(y: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / rate)[spectrum.argmax()])


def amplitude_at(y: np.ndarray, rate: int, freq: float) -> float:
    """The amplitude of the ``freq`` component (freq a whole number of cycles over ``y``)."""
    t = np.arange(len(y)) / rate
    return float(2 * np.abs(np.mean(y * np.exp(-2j * np.pi * freq * t))))


def power(y: np.ndarray) -> float:
    return float(np.mean(np.asarray(y, np.float64) ** 2))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def fresh_codec_cache():
    """available_codecs is cached per process: clear it around a test that changes what sox can do."""
    aa.available_codecs.cache_clear()
    yield
    aa.available_codecs.cache_clear()


# -- speed and pitch ---------------------------------------------------------------------------

def test_speed_perturb_shortens_by_the_factor_and_is_deterministic():
    x = voice()
    y = aa.speed_perturb(x, RATE, 1.1)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - N / 1.1) <= 0.01 * N / 1.1
    np.testing.assert_array_equal(y, aa.speed_perturb(x, RATE, 1.1))
    assert len(aa.speed_perturb(x, RATE, 0.9)) == pytest.approx(N / 0.9, rel=0.01)


def test_speed_perturb_raises_the_pitch_by_the_factor():
    assert peak_frequency(aa.speed_perturb(sine(200), RATE, 1.25), RATE) == pytest.approx(250, abs=4)


def test_pitch_shift_keeps_the_length_and_moves_the_pitch():
    x = sine(200)
    y = aa.pitch_shift(x, RATE, 12.0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert peak_frequency(y, RATE) == pytest.approx(400, abs=8)
    assert peak_frequency(aa.pitch_shift(x, RATE, -12.0), RATE) == pytest.approx(100, abs=8)
    np.testing.assert_array_equal(y, aa.pitch_shift(x, RATE, 12.0))
    same = aa.pitch_shift(x, RATE, 0)
    np.testing.assert_array_equal(same, x)
    assert same is not x


@pytest.mark.parametrize("call, name", [
    (lambda: aa.speed_perturb(sine(200), RATE, 2.5), "factor"),
    (lambda: aa.pitch_shift(sine(200), RATE, 13), "semitones"),
    (lambda: aa.room_impulse_response(RATE, 3.0, rng()), "rt60"),
    (lambda: aa.add_noise(sine(200), 10, rng(), "blue"), "color"),
    (lambda: aa.add_noise(sine(200), float("nan"), rng()), "snr_db"),
    (lambda: aa.mulaw(sine(200), bits=1), "bits"),
    (lambda: aa.telephone(sine(200), RATE, "opus"), "codec"),
    (lambda: aa.gsm(sine(200), RATE), "rate"),
    (lambda: aa.speed_perturb(np.zeros((2, 100), np.float32), RATE, 1.1), "audio"),
    (lambda: aa.reverberate(np.array([0.0, np.nan], np.float32), RATE, 0.3, rng()), "audio"),
])
def test_bad_arguments_raise_a_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=rf"^\w+: {name} must"):
        call()


# -- room ---------------------------------------------------------------------------------------

def test_room_impulse_response_has_unit_energy_a_pre_delay_and_decays_60_db():
    h = aa.room_impulse_response(RATE, 0.3, rng())
    assert h.shape == (round(0.3 * RATE),) and h.dtype == np.float32
    assert np.sum(h.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert h[0] > 0 and not h[1:RATE // 1000].any()  # direct path, then at least 1 ms of nothing
    assert h[RATE // 100 + 1:RATE // 100 + 50].all()  # the tail has begun by 10 ms
    tenth = len(h) // 10
    first, last = np.sum(h[:tenth] ** 2), np.sum(h[-tenth:] ** 2)
    assert last < 1e-4 * first  # -54 dB to -60 dB of amplitude in the last tenth


def test_room_impulse_response_is_deterministic_under_a_seed():
    np.testing.assert_array_equal(aa.room_impulse_response(RATE, 0.2, rng(1)), aa.room_impulse_response(RATE, 0.2, rng(1)))
    assert not np.array_equal(aa.room_impulse_response(RATE, 0.2, rng(1)), aa.room_impulse_response(RATE, 0.2, rng(2)))


def test_reverberate_keeps_length_and_peak_and_rings_after_the_sound_stops():
    x = sine(500)
    x[RATE // 10:] = 0  # 100 ms of tone, then silence
    y = aa.reverberate(x, RATE, 0.4, rng())
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-5)
    after = slice(RATE // 10, RATE // 5)  # the 100 ms after the tone ends
    assert power(y[after]) > 1e-3 * power(x[:RATE // 10])  # the room still rings
    np.testing.assert_array_equal(y, aa.reverberate(x, RATE, 0.4, rng()))
    assert not np.array_equal(y, aa.reverberate(x, RATE, 0.4, rng(1)))


# -- noise --------------------------------------------------------------------------------------

@pytest.mark.parametrize("color", aa.NOISE_COLORS)
@pytest.mark.parametrize("snr_db", [0.0, 12.3, 30.0])
def test_add_noise_hits_the_snr_exactly(color, snr_db):
    x = voice()
    y = aa.add_noise(x, snr_db, rng(), color)
    assert y.shape == x.shape and y.dtype == np.float32
    assert 10 * np.log10(power(x) / power(y.astype(np.float64) - x)) == pytest.approx(snr_db, abs=0.01)


def test_add_noise_is_deterministic_under_a_seed_and_leaves_silence_alone():
    x = voice()
    np.testing.assert_array_equal(aa.add_noise(x, 10, rng(3), "pink"), aa.add_noise(x, 10, rng(3), "pink"))
    assert not np.array_equal(aa.add_noise(x, 10, rng(3), "pink"), aa.add_noise(x, 10, rng(4), "pink"))
    silence = np.zeros(N, np.float32)
    np.testing.assert_array_equal(aa.add_noise(silence, 10, rng()), silence)


def test_noise_colours_have_their_spectra():
    x = sine(1000, n=4 * N)  # 2 s: a steadier spectrum estimate
    density = {}
    for color in aa.NOISE_COLORS:
        noise = aa.add_noise(x, 0.0, rng(), color).astype(np.float64) - x
        f, psd = scipy.signal.welch(noise, fs=RATE, nperseg=1024)
        density[color] = psd[(f > 0) & (f < 500)].mean() / psd[f > 2000].mean()  # low over high, per Hz
    assert 0.7 < density["white"] < 1.4  # flat
    assert density["pink"] > 5
    assert density["brown"] > 10 * density["pink"]


# -- codecs -------------------------------------------------------------------------------------

def uniform_8bit(x: np.ndarray) -> np.ndarray:
    """A uniform quantiser with 256 levels over [-1, 1], the reference μ-law and A-law beat on quiet sound."""
    return (np.round((np.clip(x, -1, 1) + 1) / 2 * 255) / 255 * 2 - 1).astype(np.float32)


@pytest.mark.parametrize("codec", [aa.mulaw, aa.alaw])
def test_companding_beats_a_uniform_quantiser_on_quiet_sound(codec):
    quiet = sine(200, amp=0.01)
    y = codec(quiet)
    assert y.shape == quiet.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, codec(quiet))
    rms = np.sqrt(power(y - quiet))
    assert 0 < rms < 0.25 * np.sqrt(power(uniform_8bit(quiet) - quiet))
    loud = sine(200, amp=0.9)
    assert np.sqrt(power(codec(loud) - loud)) < 0.01  # about 38 dB SNR on a loud tone


def test_mulaw_uses_2_to_the_bits_codes():
    ramp = np.linspace(-1, 1, 100_001, dtype=np.float32)
    assert len(np.unique(aa.mulaw(ramp))) <= 256
    assert len(np.unique(aa.mulaw(ramp, bits=4))) <= 16
    assert len(np.unique(aa.alaw(ramp))) <= 256


def aligned_correlation(y: np.ndarray, x: np.ndarray) -> float:
    """The correlation of ``y`` with ``x`` at the lag that maximises it (codecs delay)."""
    lags = scipy.signal.correlation_lags(len(y), len(x))
    lag = lags[np.argmax(scipy.signal.correlate(y, x))]
    a, b = (y[lag:], x[:len(x) - lag]) if lag >= 0 else (y[:lag], x[-lag:])
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("codec, name", [(aa.gsm, "gsm"), (aa.amr_nb, "amr-nb")])
def test_sox_codecs_keep_the_speech_but_change_it(codec, name):
    if name not in aa.available_codecs():
        pytest.skip(f"sox cannot write {name} here")
    x = voice(rate=8000, n=4000)
    y = codec(x, 8000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert aligned_correlation(y, x) > 0.5
    assert not np.allclose(y, x, atol=1e-3)
    np.testing.assert_array_equal(y, codec(x, 8000))


def test_without_sox_the_codecs_say_what_to_install_and_augment_falls_back(monkeypatch, fresh_codec_cache):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    x = voice(rate=8000, n=4000)
    for codec in (aa.gsm, aa.amr_nb):
        with pytest.raises(aa.CodecUnavailable, match="apt-get install sox libsox-fmt-all") as info:
            codec(x, 8000)
        assert isinstance(info.value, RuntimeError) and "\n" not in str(info.value)
    assert aa.available_codecs() == ("none", "mulaw", "alaw")
    config = aa.ChannelConfig(telephone_prob=1.0, codecs=("gsm",))
    y, rate, record = aa.augment(x, 8000, ["telephone"], rng(), config)
    assert record["telephone"] == "mulaw" and rate == 8000 and len(y) == len(x)


# -- telephone ------------------------------------------------------------------------------------

def test_telephone_returns_8_khz_band_limited_audio():
    tones = {100: 0.2, 1000: 0.2, 3000: 0.2, 6000: 0.2}  # 6 kHz would alias to 2 kHz if not filtered
    x = sum(sine(f, amp) for f, amp in tones.items()).astype(np.float32)
    y = aa.telephone(x, RATE, codec="none")
    assert y.dtype == np.float32 and len(y) == pytest.approx(N * 8000 / RATE, abs=1)
    gain = {f: amplitude_at(y, 8000, f) / amp for f, amp in tones.items() if f < 4000}
    db = {f: 20 * np.log10(g / gain[1000]) for f, g in gain.items()}
    assert db[100] < -20
    assert db[3000] > -3
    assert 20 * np.log10(amplitude_at(y, 8000, 2000) / 0.2 / gain[1000]) < -40  # no alias of 6 kHz
    assert np.abs(y).max() == pytest.approx(np.abs(x).max(), rel=1e-5)  # the peak level is kept


@pytest.mark.parametrize("codec", aa.CODECS)
def test_telephone_runs_every_codec_and_is_deterministic(codec):
    if codec not in aa.available_codecs():
        pytest.skip(f"sox cannot write {codec} here")
    x = voice()
    y = aa.telephone(x, RATE, codec)
    assert y.shape == (N // 2,) and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.abs(y).max() <= 0.99 + 0.02  # the peak stays below full scale (codecs round a little)
    assert aligned_correlation(y, aa.telephone(x, RATE, "none")) > 0.5
    np.testing.assert_array_equal(y, aa.telephone(x, RATE, codec))


# -- the mixture ------------------------------------------------------------------------------------

ALWAYS = aa.ChannelConfig(speed_prob=1, pitch_prob=1, reverb_prob=1, noise_prob=1, telephone_prob=1,
                          codecs=("mulaw",))


def test_augment_applies_only_the_named_ingredients():
    x = voice()
    y, rate, record = aa.augment(x, RATE, ["noise"], rng(), ALWAYS)
    assert rate == RATE and y.shape == x.shape and y.dtype == np.float32
    assert set(record) == {"noise", "snr_db", "gain_db"}
    y, rate, record = aa.augment(x, RATE, [], rng(), ALWAYS)
    assert set(record) == {"gain_db"}
    np.testing.assert_allclose(y, np.clip(x * 10 ** (record["gain_db"] / 20), -1, 1), rtol=1e-6)


def test_augment_with_everything_ends_on_the_telephone_line():
    x = voice()
    y, rate, record = aa.augment(x, RATE, aa.AUGMENTATIONS, rng(), ALWAYS)
    assert rate == 8000
    assert set(record) == {"speed", "semitones", "rt60", "noise", "snr_db", "telephone", "gain_db"}
    assert len(y) == pytest.approx(N / record["speed"] * 8000 / RATE, rel=0.01)
    assert np.abs(y).max() <= 1.0
    assert json.loads(json.dumps(record)) == record


def test_augment_is_deterministic_under_a_seed():
    x = voice()
    a = aa.augment(x, RATE, aa.AUGMENTATIONS, rng(7))
    b = aa.augment(x, RATE, aa.AUGMENTATIONS, rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]
    c = aa.augment(x, RATE, aa.AUGMENTATIONS, rng(8))
    assert c[2] != a[2]


def test_augment_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"augment: names must be among \('speed'.*'telephone'\), got unknown \['echo'\]"):
        aa.augment(voice(), RATE, ["noise", "echo"], rng())
    with pytest.raises(ValueError, match="got the string 'noise'"):
        aa.augment(voice(), RATE, "noise", rng())


@pytest.mark.parametrize("kwargs, field", [
    ({"speed_prob": 1.5}, "speed_prob"),
    ({"speed": (1.1, 0.9)}, "speed"),
    ({"rt60": (0.01, 0.5)}, "rt60"),
    ({"codecs": ("mulaw", "opus")}, "codecs"),
    ({"noise_colors": ()}, "noise_colors"),
])
def test_channel_config_validates_its_fields(kwargs, field):
    with pytest.raises(ValueError, match=f"^ChannelConfig: {field} must .*got"):
        aa.ChannelConfig(**kwargs)


# -- SpecAugment --------------------------------------------------------------------------------------

def masked(lengths=(40, 25, 10, 0), seed=0, **kwargs):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(len(lengths), 40, 20, generator=g)  # (B, T, F)
    original = x.clone()
    options = {"freq_width": 8, "time_fraction": 0.2, **kwargs}
    out = aa.spec_augment(x, torch.tensor(lengths), torch.Generator().manual_seed(seed), **options)
    torch.testing.assert_close(x, original, rtol=0, atol=0)  # the input is untouched
    return x, out, lengths


def test_spec_augment_masks_bands_and_spans_with_the_mean_inside_the_valid_frames():
    x, out, lengths = masked()
    assert out.shape == x.shape and out is not x
    assert (out != x).any()
    for b, length in enumerate(lengths):
        torch.testing.assert_close(out[b, length:], x[b, length:], rtol=0, atol=0)  # padding untouched
        if length == 0:
            continue
        changed = out[b, :length] != x[b, :length]  # (L, F)
        mean = x[b, :length].mean()
        assert torch.all(out[b, :length][changed] == mean)
        bands, spans = changed.all(0), changed.all(1)  # (F,), (L,): whole bands, whole spans
        assert torch.equal(changed, bands[None, :] | spans[:, None])
        assert bands.sum() <= 2 * 8 and spans.sum() <= 2 * int(0.2 * length)


def test_spec_augment_is_deterministic_under_a_generator_seed():
    _, a, _ = masked(seed=5)
    _, b, _ = masked(seed=5)
    _, c, _ = masked(seed=6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    x, out, _ = masked(freq_masks=0, time_masks=0)
    torch.testing.assert_close(out, x, rtol=0, atol=0)


def test_spec_augment_rejects_lengths_beyond_the_batch():
    with pytest.raises(ValueError, match=r"spec_augment: lengths must be ints \(B,\) = \(2,\) in \[0, 5\], got \[3, 6\]"):
        aa.spec_augment(torch.zeros(2, 5, 3), [3, 6])
