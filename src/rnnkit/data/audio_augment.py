"""Audio augmentations for the speech task: domain randomisation toward real telephone channels.

Synthesised speech is clean, full-band and always equally loud; telephone speech is none of
these. The ingredients here move clean audio toward the real channel, one effect each:
speed (tempo and pitch), pitch alone, room reverberation, additive noise, and the telephone
channel itself (8 kHz, 300-3400 Hz band, a codec). :func:`augment` draws a random mixture of
them per utterance; :func:`spec_augment` masks bands and spans of the features afterwards.

Audio is mono float32 ``(N,)`` with samples in about [-1, 1] at ``rate`` Hz. Every function is
deterministic given its arguments: randomness comes only from the ``np.random.Generator``
(``torch.Generator`` for :func:`spec_augment`) it is handed. librosa and soundfile (the speech
task's extras) are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import torch

__all__ = [
    "AUGMENTATIONS", "CODECS", "NOISE_COLORS", "ChannelConfig", "CodecUnavailable", "add_noise", "alaw",
    "amr_nb", "augment", "available_codecs", "gsm", "mulaw", "pitch_shift", "reverberate",
    "room_impulse_response", "spec_augment", "speed_perturb", "telephone", "TELEPHONE_BAND", "TELEPHONE_RATE",
]

AUGMENTATIONS = ("speed", "pitch", "reverb", "noise", "telephone")  # the order augment applies them in
NOISE_COLORS = ("white", "pink", "brown")
CODECS = ("none", "mulaw", "alaw", "gsm", "amr-nb")
TELEPHONE_RATE = 8000  # Hz: narrowband telephony
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: the ITU-T voice band
_SOX_CODECS = {"gsm": "gsm", "amr-nb": "amr-nb"}  # codec name -> the file extension sox writes it as
_INSTALL = "apt-get install sox libsox-fmt-all"


class CodecUnavailable(RuntimeError):
    """A telephone codec needs the ``sox`` binary built with that format, and it is missing."""


# -- checks -------------------------------------------------------------------------------------

def _check_audio(owner: str, audio: Any) -> np.ndarray:
    """``audio`` as float32 (N,), N >= 1, every sample finite."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{owner}: audio must be mono with shape (N,), N >= 1, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{owner}: audio must be finite, got {int((~np.isfinite(a)).sum())} NaN/inf samples")
    return a


def _check_rate(owner: str, rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{owner}: rate must be a positive int (Hz), got {rate!r}")
    return int(rate)


def _check_range(owner: str, name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not lo <= value <= hi:
        raise ValueError(f"{owner}: {name} must be in [{lo}, {hi}], got {value!r}")
    return float(value)


def _peak(audio: np.ndarray) -> float:
    return float(np.abs(audio).max())


# -- speed, pitch, room ---------------------------------------------------------------------------

def speed_perturb(audio: np.ndarray, rate: int, factor: float) -> np.ndarray:
    """Kaldi-style speed perturbation: tempo and pitch both scale by ``factor``, (N,) -> (≈N / factor,).

    The samples are read as if recorded at ``rate * factor`` and resampled to ``rate`` (soxr,
    high quality), so 1.1 is 10% faster and 10% higher. ``factor`` in [0.5, 2].
    """
    import librosa

    audio = _check_audio("speed_perturb", audio)
    rate = _check_rate("speed_perturb", rate)
    factor = _check_range("speed_perturb", "factor", factor, 0.5, 2.0)
    if factor == 1.0:
        return audio.copy()
    out = librosa.resample(audio, orig_sr=rate * factor, target_sr=rate, res_type="soxr_hq")
    return out.astype(np.float32)  # (ceil(N / factor),)


def pitch_shift(audio: np.ndarray, rate: int, semitones: float) -> np.ndarray:
    """Pitch moved by ``semitones`` (|semitones| <= 12) at the same tempo and length: (N,) -> (N,).

    librosa's phase vocoder stretches time, then soxr resamples back. 0 returns a copy.
    """
    import librosa

    audio = _check_audio("pitch_shift", audio)
    rate = _check_rate("pitch_shift", rate)
    semitones = _check_range("pitch_shift", "semitones", semitones, -12.0, 12.0)
    if semitones == 0.0:
        return audio.copy()
    out = librosa.effects.pitch_shift(audio, sr=rate, n_steps=semitones, res_type="soxr_hq")
    return out.astype(np.float32)  # (N,)


def room_impulse_response(rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response (round(rt60 * rate),) with energy 1.

    A unit direct path at index 0, silence for a random pre-delay of 1-10 ms (the first
    reflections' extra path), then Gaussian noise under an exponential envelope that is
    60 dB down after ``rt60`` seconds (the reverberation time; rt60 in [0.05, 2] s), counted
    from the direct path. The tail's level is set per second, not per sample: its expected
    energy is ``rt60 / 0.3 s`` times the direct path's, so 0 dB direct-to-reverberant ratio at
    rt60 = 0.3 s, more reverberant for longer rooms, and the same at every sample rate.
    Finally the whole response is scaled to energy 1 so reverberation keeps the loudness.
    """
    rate = _check_rate("room_impulse_response", rate)
    rt60 = _check_range("room_impulse_response", "rt60", rt60, 0.05, 2.0)
    n = max(round(rt60 * rate), 2)
    delay = int(rng.integers(max(round(0.001 * rate), 1), max(round(0.010 * rate), 1) + 1))
    delay = min(delay, n - 1)
    t = np.arange(delay, n) / rate  # (n - delay,) seconds since the direct path
    decay = math.log(1000.0) / rt60  # amplitude exp(-decay * t): 1e-3 (-60 dB) at t = rt60
    # sum over the tail of g^2 exp(-2 decay t) ≈ g^2 rate / (2 decay); set it to rt60 / 0.3
    g = math.sqrt(2.0 * decay * rt60 / (0.3 * rate))
    rir = np.zeros(n)
    rir[0] = 1.0
    rir[delay:] = g * rng.standard_normal(n - delay) * np.exp(-decay * t)
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)  # (n,)


def reverberate(audio: np.ndarray, rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` in a synthetic room: convolved with :func:`room_impulse_response`, (N,) -> (N,).

    The tail beyond the input's end is cut off, and the result rescaled to the input's peak.
    """
    audio = _check_audio("reverberate", audio)
    rir = room_impulse_response(rate, rt60, rng)
    wet = scipy.signal.fftconvolve(audio.astype(np.float64), rir)[: len(audio)]  # (N,)
    peak = _peak(wet)
    return (wet * (_peak(audio) / peak) if peak > 0 else wet).astype(np.float32)


# -- noise ---------------------------------------------------------------------------------------

def _colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise (n,) with power spectrum ∝ 1 (white), 1/f (pink) or 1/f² (brown)."""
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)  # (n // 2 + 1,)
    f = np.fft.rfftfreq(n)
    shape = np.zeros_like(f)  # no DC: coloured noise would otherwise wander away from 0
    shape[1:] = 1.0 / np.sqrt(f[1:]) if color == "pink" else 1.0 / f[1:]  # amplitude ∝ f^-1/2 or f^-1
    return np.fft.irfft(spectrum * shape, n=n)


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """``audio`` plus noise at exactly ``snr_db`` dB signal-to-noise ratio: (N,) -> (N,).

    SNR = 10 log10(mean(audio²) / mean(noise²)) over the whole utterance. ``color`` is
    "white", "pink" (1/f power) or "brown" (1/f²), shaped from white noise in the frequency
    domain. Silent audio (all zeros) has no SNR to keep and is returned unchanged (a copy).
    """
    audio = _check_audio("add_noise", audio)
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, np.number)) or not np.isfinite(snr_db):
        raise ValueError(f"add_noise: snr_db must be a finite number (dB), got {snr_db!r}")
    if color not in NOISE_COLORS:
        raise ValueError(f"add_noise: color must be one of {NOISE_COLORS}, got {color!r}")
    signal_power = np.mean(audio.astype(np.float64) ** 2)
    if signal_power == 0:
        return audio.copy()
    noise = _colored_noise(len(audio), color, rng)  # (N,)
    noise_power = np.mean(noise ** 2)
    if noise_power == 0:  # a single sample of pink/brown noise has no AC part: nothing to add
        return audio.copy()
    noise *= np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (audio + noise).astype(np.float32)


# -- codecs ----------------------------------------------------------------------------------------

def _sign_magnitude(y: np.ndarray, bits: int) -> np.ndarray:
    """Quantise y in [-1, 1] as G.711 does: a sign bit and ``bits - 1`` magnitude bits (±0 both 0)."""
    steps = 2 ** (bits - 1) - 1
    return np.sign(y) * np.round(np.abs(y) * steps) / steps


def mulaw(audio: np.ndarray, bits: int = 8) -> np.ndarray:
    """G.711 μ-law (μ = 255): compress, quantise to 2**bits codes, expand; (N,) -> (N,).

    y = sign(x) ln(1 + μ|x|) / ln(1 + μ), so quiet samples get fine steps and loud ones
    coarse steps: the quantisation error is what remains. Like the codec, samples beyond ±1
    saturate. ``bits`` in [2, 16].
    """
    audio = _check_audio("mulaw", audio)
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise ValueError(f"mulaw: bits must be an int in [2, 16], got {bits!r}")
    mu = 255.0
    x = np.clip(audio.astype(np.float64), -1.0, 1.0)
    y = _sign_magnitude(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu), int(bits))
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def alaw(audio: np.ndarray) -> np.ndarray:
    """G.711 A-law (A = 87.6, 8 bits): compress, quantise, expand; (N,) -> (N,).

    y = A|x| / (1 + ln A) below |x| = 1/A (linear), (1 + ln(A|x|)) / (1 + ln A) above
    (logarithmic), with x's sign. Samples beyond ±1 saturate.
    """
    audio = _check_audio("alaw", audio)
    a, k = 87.6, 1.0 + math.log(87.6)
    x = np.clip(np.abs(audio.astype(np.float64)), 0.0, 1.0)
    y = np.where(x < 1.0 / a, a * x / k, (1.0 + np.log(np.maximum(a * x, 1.0))) / k)
    y = np.abs(_sign_magnitude(y, 8))
    expanded = np.where(y < 1.0 / k, y * k / a, np.exp(y * k - 1.0) / a)
    return (np.sign(audio) * expanded).astype(np.float32)


def _sox_roundtrip(audio: np.ndarray, codec: str) -> np.ndarray:
    """8 kHz float audio (N,) through a codec file written and read back by sox: (N,)."""
    import soundfile as sf

    ext = _SOX_CODECS[codec]
    if shutil.which("sox") is None:
        raise CodecUnavailable(f"{codec}: the sox binary is not installed; install it with `{_INSTALL}`")
    with tempfile.TemporaryDirectory(prefix="rnnkit-codec-") as tmp:
        wav, coded, back = Path(tmp, "in.wav"), Path(tmp, f"out.{ext}"), Path(tmp, "out.wav")
        # the codecs take 16-bit PCM: beyond ±1 saturates, as on the line
        sf.write(str(wav), np.clip(audio, -1.0, 1.0), TELEPHONE_RATE, subtype="PCM_16")
        for cmd in (["sox", str(wav), "-r", str(TELEPHONE_RATE), "-c", "1", str(coded)], ["sox", str(coded), str(back)]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
                raise CodecUnavailable(f"{codec}: sox cannot convert .{ext} files ({reason}); "
                                       f"install the formats with `{_INSTALL}`")
        decoded, _ = sf.read(str(back), dtype="float32", always_2d=True)  # (M, 1)
    out = np.zeros(len(audio), np.float32)  # the codec pads to whole 20 ms frames: keep N samples
    m = min(len(audio), len(decoded))
    out[:m] = decoded[:m, 0]
    return out


def _check_codec_input(owner: str, audio: Any, rate: Any) -> np.ndarray:
    audio = _check_audio(owner, audio)
    if _check_rate(owner, rate) != TELEPHONE_RATE:
        raise ValueError(f"{owner}: rate must be {TELEPHONE_RATE} (resample first, or use telephone), got {rate}")
    return audio


def gsm(audio: np.ndarray, rate: int) -> np.ndarray:
    """GSM 06.10 full-rate (13 kbit/s) encode and decode through sox; 8 kHz (N,) -> (N,).

    Raises CodecUnavailable when sox or its GSM format is missing.
    """
    return _sox_roundtrip(_check_codec_input("gsm", audio, rate), "gsm")


def amr_nb(audio: np.ndarray, rate: int) -> np.ndarray:
    """AMR narrowband (3GPP mobile speech codec) encode and decode through sox; 8 kHz (N,) -> (N,).

    The decoded speech lags the input by the codec's delay (a few ms), as on a real call.
    Raises CodecUnavailable when sox or its AMR-NB format is missing.
    """
    return _sox_roundtrip(_check_codec_input("amr_nb", audio, rate), "amr-nb")


@functools.cache
def available_codecs() -> tuple[str, ...]:
    """The codecs :func:`telephone` can use here: "none", "mulaw", "alaw", plus "gsm" and
    "amr-nb" when sox converts a tiny clip to them. Checked once per process."""
    found = ["none", "mulaw", "alaw"]
    probe = 0.1 * np.sin(2 * np.pi * 440.0 * np.arange(320) / TELEPHONE_RATE)  # (320,): two codec frames
    for codec in _SOX_CODECS:
        try:
            _sox_roundtrip(probe.astype(np.float32), codec)
        except (CodecUnavailable, OSError, subprocess.SubprocessError):
            continue
        found.append(codec)
    return tuple(found)


def telephone(audio: np.ndarray, rate: int, codec: str = "mulaw") -> np.ndarray:
    """The telephone channel: (N,) at ``rate`` -> (≈N * 8000 / rate,) at **8 kHz**.

    Resample to 8 kHz, band-pass 300-3400 Hz (4th-order Butterworth run forward and back, so
    no phase shift), rescale to the input's peak (at most 0.99, the codecs' headroom), then
    the ``codec``: "none", "mulaw", "alaw", "gsm" or "amr-nb" (the last two need sox, see
    :func:`available_codecs`). The caller carries on at rate 8000.
    """
    import librosa

    audio = _check_audio("telephone", audio)
    rate = _check_rate("telephone", rate)
    if codec not in CODECS:
        raise ValueError(f"telephone: codec must be one of {CODECS}, got {codec!r}")
    x = audio.astype(np.float64)
    if rate != TELEPHONE_RATE:
        x = librosa.resample(x, orig_sr=rate, target_sr=TELEPHONE_RATE, res_type="soxr_hq")  # (M,)
    sos = scipy.signal.butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")
    padlen = min(3 * (2 * len(sos) + 1), len(x) - 1)  # scipy's default, shortened for very short clips
    x = scipy.signal.sosfiltfilt(sos, x, padlen=padlen) if padlen > 0 else np.zeros_like(x)
    peak = _peak(x)
    if peak > 0:
        x *= min(_peak(audio), 0.99) / peak
    x = x.astype(np.float32)
    if codec == "mulaw":
        return mulaw(x)
    if codec == "alaw":
        return alaw(x)
    if codec in _SOX_CODECS:
        return _sox_roundtrip(x, codec)
    return x


# -- the mixture ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelConfig:
    """What :func:`augment` draws: for each ingredient the probability of applying it and the
    range its parameter is drawn from, uniformly (lo == hi fixes it)."""

    speed_prob: float = 0.5
    speed: tuple[float, float] = (0.9, 1.1)  # factor: tempo and pitch
    pitch_prob: float = 0.5
    semitones: tuple[float, float] = (-3.0, 3.0)
    reverb_prob: float = 0.3
    rt60: tuple[float, float] = (0.1, 0.6)  # seconds: small office to living room
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    noise_colors: tuple[str, ...] = NOISE_COLORS  # drawn uniformly
    telephone_prob: float = 0.6
    codecs: tuple[str, ...] = ("mulaw", "alaw", "gsm", "none")  # drawn uniformly; unavailable -> mulaw
    gain_db: tuple[float, float] = (-6.0, 6.0)  # always applied: recordings differ in level

    def __post_init__(self) -> None:
        for name in ("speed_prob", "pitch_prob", "reverb_prob", "noise_prob", "telephone_prob"):
            _check_range("ChannelConfig", name, getattr(self, name), 0.0, 1.0)
        limits = {"speed": (0.5, 2.0), "semitones": (-12.0, 12.0), "rt60": (0.05, 2.0),
                  "snr_db": (-50.0, 100.0), "gain_db": (-60.0, 60.0)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            ok = (isinstance(value, tuple) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi for v in value)
                and value[0] <= value[1])
            if not ok:
                raise ValueError(f"ChannelConfig: {name} must be a (lo, hi) tuple with {lo} <= lo <= hi <= {hi}, "
                                 f"got {value!r}")
        for name, allowed in (("noise_colors", NOISE_COLORS), ("codecs", CODECS)):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value or not set(value) <= set(allowed):
                raise ValueError(f"ChannelConfig: {name} must be a non-empty tuple of {allowed}, got {value!r}")


def augment(audio: np.ndarray, rate: int, names: Iterable[str], rng: np.random.Generator,
            config: ChannelConfig = ChannelConfig()) -> tuple[np.ndarray, int, dict[str, Any]]:
    """A random channel: the ingredients in ``names`` in AUGMENTATIONS order, each with its
    probability in ``config``, then a random gain, then clipping to [-1, 1].

    Returns (audio (M,), its rate: 8000 after "telephone", else ``rate``, a JSON-able record of
    what was drawn, e.g. {"speed": 1.04, "noise": "pink", "snr_db": 12.3, "telephone": "gsm",
    "gain_db": -2.1}; an ingredient not applied has no key). The same (audio, rate, names, rng
    state) gives the same result. A drawn codec this machine lacks (:func:`available_codecs`)
    becomes "mulaw", and the record says so.
    """
    audio = _check_audio("augment", audio)
    rate = _check_rate("augment", rate)
    if isinstance(names, str):
        raise ValueError(f"augment: names must be a collection of names from {AUGMENTATIONS}, got the string {names!r}")
    names = set(names)
    unknown = sorted(names - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"augment: names must be among {AUGMENTATIONS}, got unknown {unknown}")
    c = config

    def uniform(bounds: tuple[float, float]) -> float:
        return float(rng.uniform(*bounds))

    record: dict[str, Any] = {}
    x = audio
    for name in AUGMENTATIONS:
        if name not in names or rng.random() >= getattr(c, f"{name}_prob"):
            continue
        if name == "speed":
            record["speed"] = uniform(c.speed)
            x = speed_perturb(x, rate, record["speed"])
        elif name == "pitch":
            record["semitones"] = uniform(c.semitones)
            x = pitch_shift(x, rate, record["semitones"])
        elif name == "reverb":
            record["rt60"] = uniform(c.rt60)
            x = reverberate(x, rate, record["rt60"], rng)
        elif name == "noise":
            record["noise"] = str(c.noise_colors[rng.integers(len(c.noise_colors))])
            record["snr_db"] = uniform(c.snr_db)
            x = add_noise(x, record["snr_db"], rng, record["noise"])
        else:  # telephone
            codec = str(c.codecs[rng.integers(len(c.codecs))])
            record["telephone"] = codec if codec in available_codecs() else "mulaw"
            x = telephone(x, rate, record["telephone"])
            rate = TELEPHONE_RATE
    record["gain_db"] = uniform(c.gain_db)
    x = np.clip(x * 10.0 ** (record["gain_db"] / 20.0), -1.0, 1.0)
    return x.astype(np.float32), rate, record


# -- features ---------------------------------------------------------------------------------------

def spec_augment(x: torch.Tensor, lengths: torch.Tensor | Iterable[int], generator: torch.Generator | None = None,
                 freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2,
                 time_fraction: float = 0.05) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) masking on a padded batch of features: (B, T, F) -> (B, T, F).

    Per utterance b with ``lengths[b]`` valid frames: ``freq_masks`` bands of width uniform in
    [0, freq_width] and ``time_masks`` spans of width uniform in [0, time_fraction * length]
    frames, at uniform positions, are set to the utterance's mean feature value (over its
    valid frames, before masking), so a mask looks like neither silence nor speech. Only valid
    frames are masked; the padding is left as it is. Returns a new tensor, ``x`` is untouched.
    Randomness from ``generator`` (None: torch's global generator).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"spec_augment: x must be a float tensor (B, T, F), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    B, T, F = x.shape  # batch, frames, features
    lengths = torch.as_tensor(lengths).cpu()
    if lengths.shape != (B,) or lengths.is_floating_point() or (lengths < 0).any() or (lengths > T).any():
        raise ValueError(f"spec_augment: lengths must be ints (B,) = ({B},) in [0, {T}], got {lengths.tolist()}")
    for name, value in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"spec_augment: {name} must be an int >= 0, got {value!r}")
    _check_range("spec_augment", "time_fraction", time_fraction, 0.0, 1.0)

    def randint(high: int) -> int:  # uniform in [0, high]
        return int(torch.randint(high + 1, (1,), generator=generator).item())

    out = x.clone()
    for b, length in enumerate(lengths.tolist()):
        if length == 0:
            continue
        mean = x[b, :length].mean()  # the valid frames' mean feature value
        for _ in range(freq_masks):
            width = randint(min(freq_width, F))
            start = randint(F - width)
            out[b, :length, start:start + width] = mean
        for _ in range(time_masks):
            width = randint(int(time_fraction * length))
            start = randint(length - width)
            out[b, start:start + width, :] = mean
    return out
