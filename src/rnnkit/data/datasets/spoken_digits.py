"""Spoken digit strings ("three one four one") synthesised offline, as log-mel frames.

By default the audio comes from libespeak-ng as shipped (with its voice data) by the
espeakng-loader package, called through ``ctypes``; no system espeak-ng is needed. flite and
Festival (Debian packages) add their voices with ``engines`` (:mod:`.synthesizers`). The
pipeline::

    digits --words--> "three one four" --synthesiser (voice, rate, pitch)--> audio at its rate
           [--channel (training only, ``augment``): speed, pitch, reverb, noise, telephone]
           --librosa.resample (soxr)--> float32 at 16 kHz
           --librosa log-mel (25 ms window, 10 ms hop, 40 bands)--> (T, 40) float32

Voices are an English accent plus a voice variant: ``"en-us+m3"``. ``voice_split()``
holds whole accents *and* whole variants out: a test voice has a test accent or a test
variant (so it is an accent or a voice quality the model never heard), a validation voice
likewise with the validation accents/variants, and the training voices are the rest
(5 accents x 12 variants = 60 voices). Each utterance draws its voice, its speaking rate
(words per minute) and its pitch (0-99) at random.

Held-out engines. With ``held_out_engine`` set (e.g. "festival"), training hears only the
``engines`` (e.g. espeak's training voices and flite's), and validation and test are every
voice of the held-out synthesiser: a proxy for speakers the model never heard, since a whole
way of making speech is unseen. ``augment`` passes each training utterance through a random
channel (:func:`rnnkit.data.audio_augment.augment`, seeded per utterance); validation and test
stay clean.

Determinism. Which texts, voices, rates and pitches make up a data set depends only on the
settings and their ``seed`` (the channel drawn for each utterance too). libespeak-ng keeps internal state from one utterance to the
next (the waveform of an utterance varies by a few samples with what was spoken before it,
even after re-initialising or re-seeding its random generator), so the audio is
reproducible only for a fixed sequence of calls in a fresh process. ``synthesize_features``
therefore runs each fixed chunk of utterances in a fresh Python process (this file, run as
a worker), which makes the features identical run after run, whatever the number of
worker processes. ``load_spoken_digits`` caches the features under
``~/.cache/rnnkit/speech/<key>/`` (``$RNNKIT_CACHE`` moves the root), keyed by every
setting that changes them, as ``.npy`` files and JSON (the channel drawn for every training
utterance is in ``channels.json``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .synthesizers import ESPEAK_RATE, Espeak

log = logging.getLogger(__name__)

__all__ = ["DIGIT_WORDS", "ACCENTS", "VARIANTS", "TEST_ACCENTS", "TEST_VARIANTS", "VAL_ACCENTS", "VAL_VARIANTS",
           "SpokenDigitsConfig", "Utterance", "SpokenDigits", "Synthesized", "voice_split", "split_voices",
           "make_utterances", "Espeak",
           "synthesize_features", "load_spoken_digits", "read_audio", "resample", "log_mel", "audio_features",
           "cache_root", "FEATURE_RATE", "ESPEAK_RATE", "MAX_AUDIO_SECONDS", "MAX_AUDIO_SAMPLES",
           "MIN_AUDIO_RATE", "MAX_AUDIO_RATE", "MAX_AUDIO_CHANNELS", "MAX_AUDIO_AMPLITUDE"]

DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# English accents of espeak-ng (voice names as espeak_SetVoiceByName takes them).
ACCENTS: tuple[str, ...] = ("en", "en-us", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
                            "en-gb-scotland", "en-029")
# Voice variants (espeak-ng-data/voices/!v): "" is the accent's own voice; m = male, f = female,
# klatt = Klatt's formant synthesiser instead of espeak's own.
VARIANTS: tuple[str, ...] = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                             "klatt", "klatt2", "klatt3", "klatt4")
TEST_ACCENTS: tuple[str, ...] = ("en-gb-scotland", "en-029")  # Scottish and Caribbean English
TEST_VARIANTS: tuple[str, ...] = ("m3", "f2", "klatt3")
VAL_ACCENTS: tuple[str, ...] = ("en-us-nyc",)
VAL_VARIANTS: tuple[str, ...] = ("m6", "f4")

FEATURE_RATE = 16000  # Hz, what the features are computed at (any input is resampled to it)
_GENERATION_VERSION = 2  # bump when the synthesis or the features change: a new cache key
_CHUNK = 400  # utterances per worker process (fixed: the chunking decides the audio)


@dataclass
class SpokenDigitsConfig:
    train_size: int = 4000  # utterances in the training voices
    val_size: int = 400  # utterances in the validation voices
    test_size: int = 800  # utterances in the test voices
    min_digits: int = 2  # digits per utterance, drawn uniformly from [min_digits, max_digits]
    max_digits: int = 6
    min_rate: int = 130  # speaking rate in words per minute (espeak's default is 175)
    max_rate: int = 260
    min_pitch: int = 25  # espeak pitch, 0-99 (default 50)
    max_pitch: int = 75
    n_mels: int = 40  # log-mel bands per 10 ms frame
    seed: int = 0  # fixes the texts, voices, rates and pitches
    # synthesisers of the training voices (synthesizers.ENGINES); one not installed is skipped
    # with a warning
    engines: tuple[str, ...] = ("espeak",)
    # "": validation and test are espeak's held-out voices; an engine name (not in engines):
    # they are every voice of that synthesiser, which training never hears
    held_out_engine: str = ""
    augment: tuple[str, ...] = ()  # channel ingredients of training utterances (audio_augment.AUGMENTATIONS)
    max_frequency: float = 8000.0  # Hz, the top of the mel bands (3800: all inside the telephone band)

    def __post_init__(self) -> None:
        from ..audio_augment import AUGMENTATIONS
        from .synthesizers import ENGINES

        owner = "SpokenDigitsConfig"
        self.engines, self.augment = tuple(self.engines), tuple(self.augment)
        if not self.engines or any(e not in ENGINES for e in self.engines) or len(set(self.engines)) < len(self.engines):
            raise ValueError(f"{owner}: engines must be one or more of {', '.join(ENGINES)} (no repeats), "
                             f"got {list(self.engines)}")
        if self.held_out_engine and (self.held_out_engine not in ENGINES or self.held_out_engine in self.engines):
            raise ValueError(f"{owner}: held_out_engine must be one of {', '.join(ENGINES)} not among engines "
                             f"{list(self.engines)}, got {self.held_out_engine!r}")
        if not self.held_out_engine and "espeak" not in self.engines:
            raise ValueError(f"{owner}: without held_out_engine, validation and test are espeak's held-out voices: "
                             f"engines must include espeak, got {list(self.engines)}")
        if not 1000.0 <= self.max_frequency <= FEATURE_RATE / 2:
            raise ValueError(f"{owner}: max_frequency must be in [1000, {FEATURE_RATE // 2}] Hz, got {self.max_frequency}")
        if any(a not in AUGMENTATIONS for a in self.augment) or len(set(self.augment)) < len(self.augment):
            raise ValueError(f"{owner}: augment must be some of {', '.join(AUGMENTATIONS)} (no repeats), "
                             f"got {list(self.augment)}")
        for name in ("train_size", "val_size", "test_size", "min_digits", "n_mels", "min_rate", "min_pitch"):
            value = getattr(self, name)
            low = 0 if name == "min_pitch" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
        for low, high in (("min_digits", "max_digits"), ("min_rate", "max_rate"), ("min_pitch", "max_pitch")):
            if not getattr(self, low) <= getattr(self, high):
                raise ValueError(f"{owner}: {high} must be >= {low}, got {low}={getattr(self, low)}, "
                                 f"{high}={getattr(self, high)}")
        if not (80 <= self.min_rate and self.max_rate <= 450):
            raise ValueError(f"{owner}: rates must lie in [80, 450] words per minute, got "
                             f"[{self.min_rate}, {self.max_rate}]")
        if self.max_pitch > 99:
            raise ValueError(f"{owner}: max_pitch must be <= 99, got {self.max_pitch}")


class Utterance(NamedTuple):
    text: str  # "three one four"
    voice: str  # "en-us+m3" (espeak), "slt" (flite), "kal_diphone" (Festival)
    rate: int  # words per minute
    pitch: int  # 0-99
    engine: str = "espeak"  # the synthesiser (synthesizers.ENGINES)


class SpokenDigits(NamedTuple):
    """One split: log-mel frames of every utterance end to end, and what was said.

    ``features[offsets[i]:offsets[i] + lengths[i]]`` are utterance i's frames.
    """

    features: np.ndarray  # (sum of lengths, n_mels) float16
    lengths: np.ndarray  # (N,) int64, frames per utterance
    utterances: list[Utterance]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)  # (N,)


def voice_split() -> dict[str, list[str]]:
    """The voices of each split: {"train": [...], "val": [...], "test": [...]}, disjoint."""
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for accent in ACCENTS:
        for variant in VARIANTS:
            voice = f"{accent}+{variant}" if variant else accent
            if accent in TEST_ACCENTS or variant in TEST_VARIANTS:
                split["test"].append(voice)
            elif accent in VAL_ACCENTS or variant in VAL_VARIANTS:
                split["val"].append(voice)
            else:
                split["train"].append(voice)
    return split


def split_voices(config: SpokenDigitsConfig, split: str) -> dict[str, list[str]]:
    """{engine: voices} of one split. Training: the installed ``engines`` (espeak with its training
    voices, the others with all theirs); validation and test: espeak's held-out voices, or every
    voice of ``held_out_engine``. ValueError if the held-out engine or every training engine is
    missing."""
    from .synthesizers import ENGINE_VOICES, engine_available

    def voices(engine: str, part: str) -> list[str]:
        if engine != "espeak":
            return list(ENGINE_VOICES[engine])
        split_of = voice_split()
        return split_of[part] if part != "all" else split_of["train"] + split_of["val"] + split_of["test"]

    if split != "train":
        if not config.held_out_engine:
            return {"espeak": voices("espeak", split)}
        if not engine_available(config.held_out_engine):
            raise ValueError(f"SpokenDigitsConfig: held_out_engine {config.held_out_engine} is not installed here")
        return {config.held_out_engine: voices(config.held_out_engine, "all")}
    present = [e for e in config.engines if engine_available(e)]
    for engine in sorted(set(config.engines) - set(present)):
        log.warning("spoken digits: engine %s is not installed: its voices are left out of training", engine)
    if not present:
        raise ValueError(f"SpokenDigitsConfig: none of the engines {list(config.engines)} is installed here")
    return {e: voices(e, "train") for e in present}


def make_utterances(config: SpokenDigitsConfig, split: str) -> list[Utterance]:
    """The texts, voices, rates and pitches of one split; a function of config (and its seed) and
    of which engines are installed. With several engines each utterance draws its engine, then
    one of its voices (so every engine is heard about equally often)."""
    pools = split_voices(config, split)
    engines = list(pools)
    n = {"train": config.train_size, "val": config.val_size, "test": config.test_size}[split]
    rng = np.random.default_rng([config.seed, ("train", "val", "test").index(split)])
    out = []
    for _ in range(n):
        count = int(rng.integers(config.min_digits, config.max_digits + 1))
        text = " ".join(DIGIT_WORDS[d] for d in rng.integers(0, 10, count))
        engine = engines[int(rng.integers(len(engines)))] if len(engines) > 1 else engines[0]
        voice = pools[engine][int(rng.integers(len(pools[engine])))]
        rate = int(rng.integers(config.min_rate, config.max_rate + 1))
        pitch = int(rng.integers(config.min_pitch, config.max_pitch + 1))
        out.append(Utterance(text, voice, rate, pitch, engine))
    return out


# -- audio and features -----------------------------------------------------------------------

def resample(audio: np.ndarray, orig_rate: int, target_rate: int = FEATURE_RATE) -> np.ndarray:
    """float32 audio (N,) from orig_rate to target_rate (librosa with soxr, high quality)."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    if orig_rate == target_rate:
        return audio
    return librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def log_mel(audio: np.ndarray, sample_rate: int = FEATURE_RATE, n_mels: int = 40,
            fmax: float | None = None) -> np.ndarray:
    """Log-mel frames (T, n_mels) float32: 25 ms Hann windows every 10 ms, power, natural log;
    the mel bands span 20 Hz to ``fmax`` (default: half the sample rate; 3,800 Hz keeps
    every band inside the telephone band).

    T = 1 + len(audio) // hop (librosa's centred frames). log(S + 1e-6) keeps silence finite.
    """
    import librosa

    n_fft, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)  # 400, 160 at 16 kHz
    power = librosa.feature.melspectrogram(y=np.asarray(audio, dtype=np.float32), sr=sample_rate, n_fft=n_fft,
                                           hop_length=hop, n_mels=n_mels, fmin=20.0, fmax=fmax or sample_rate / 2)  # (n_mels, T)
    return np.log(power + 1e-6).T.astype(np.float32)  # (T, n_mels)


def audio_features(audio: np.ndarray, sample_rate: int, n_mels: int = 40, fmax: float | None = None) -> np.ndarray:
    """Mono float audio at any rate -> log-mel frames (T, n_mels) at FEATURE_RATE, as in training."""
    return log_mel(resample(audio, sample_rate, FEATURE_RATE), FEATURE_RATE, n_mels, fmax)


# Limits of read_audio: a recording it accepts fits in memory and gives features without overflow.
MAX_AUDIO_SECONDS = 600.0  # 10 minutes
MAX_AUDIO_SAMPLES = 1 << 26  # frames x channels (67,108,864: 256 MiB as float32; 10 min of 48 kHz stereo is 57.6M)
MIN_AUDIO_RATE, MAX_AUDIO_RATE = 1000, 384000  # Hz; below 1 kHz resampling to 16 kHz would multiply the samples
MAX_AUDIO_CHANNELS = 64
MAX_AUDIO_AMPLITUDE = 1000.0  # float files hold full scale as +-1; 1000x that is not a recording


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV (or FLAC / OGG: anything libsndfile reads) as mono float32 (N,) and its sample rate.

    Stereo and multi-channel audio is mixed down (the mean of the channels). Raises ValueError
    naming the file for an empty file, a file that is not audio, one without a single sample,
    and one that breaks a limit, checked on the header before the samples are read: a rate
    outside [1 kHz, 384 kHz], more than 64 channels, more than 10 minutes or 2**26 samples
    (frames x channels); then a NaN, an infinite sample or one beyond +-1000 (a float file's
    full scale is +-1), which no feature computation could use.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"read_audio: audio file {path} does not exist")
    try:
        info = sf.info(str(path))
        frames, channels, rate = int(info.frames), int(info.channels), int(info.samplerate)
        _check_audio_header(path, frames, channels, rate)
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError) as e:
        raise ValueError(f"read_audio: {path} is not a readable audio file "
                         f"(expected a WAV/FLAC/OGG; {(str(e).splitlines() or [''])[0] or type(e).__name__})") from None
    if data.shape[0] == 0:
        raise ValueError(f"read_audio: {path} holds no audio samples (expected a non-empty recording)")
    finite = np.isfinite(data)
    if not finite.all():
        k = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(f"read_audio: {path} sample {k} is {data[k][~finite[k]][0]} (a float file with NaN or "
                         "infinite samples is not a recording)")
    peak = float(np.abs(data).max())
    if peak > MAX_AUDIO_AMPLITUDE:
        raise ValueError(f"read_audio: {path} has a sample of magnitude {peak:.3g}, beyond +-{MAX_AUDIO_AMPLITUDE:g} "
                         "(full scale is +-1)")
    return data.mean(axis=1).astype(np.float32), int(rate)


def _check_audio_header(path: Path, frames: int, channels: int, rate: int) -> None:
    """The limits of read_audio on what the header declares (ValueError naming the file)."""
    if not MIN_AUDIO_RATE <= rate <= MAX_AUDIO_RATE:
        raise ValueError(f"read_audio: {path} has a sample rate of {rate} Hz, expected {MIN_AUDIO_RATE} to "
                         f"{MAX_AUDIO_RATE} Hz")
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise ValueError(f"read_audio: {path} has {channels} channels, expected 1 to {MAX_AUDIO_CHANNELS}")
    if frames > MAX_AUDIO_SECONDS * rate or frames * channels > MAX_AUDIO_SAMPLES:
        raise ValueError(f"read_audio: {path} holds {frames:,} frames of {channels} channels at {rate} Hz "
                         f"({frames / rate:.1f} s), more than the limits of {MAX_AUDIO_SECONDS:g} s and "
                         f"{MAX_AUDIO_SAMPLES:,} samples")


# -- synthesis in worker processes, and the cache -------------------------------------------------

class Synthesized(NamedTuple):
    """What ``synthesize_features`` made of a list of utterances."""

    features: np.ndarray  # (sum of lengths, n_mels) float16
    lengths: np.ndarray  # (N,) int64
    channels: list[dict]  # (N,) the channel drawn for each utterance ({} without augment)


def _synthesize_chunk(utterances: Sequence[Utterance], n_mels: int, seed: int, augment: Sequence[str] = (),
                      augment_seeds: Sequence[int] = (), fmax: float | None = None) -> Synthesized:
    """Features of utterances, synthesised in order in this process (each engine's in one batch,
    in the utterances' order), each passed through the channel of ``augment`` drawn with its
    seed of ``augment_seeds``."""
    from .synthesizers import synthesize

    if any(u.engine == "espeak" for u in utterances):
        Espeak.get().set_random_seed(seed)
    audio: list = [None] * len(utterances)
    for engine in dict.fromkeys(u.engine for u in utterances):
        index = [i for i, u in enumerate(utterances) if u.engine == engine]
        made = synthesize(engine, [(utterances[i].text, utterances[i].voice, utterances[i].rate, utterances[i].pitch)
                                   for i in index])
        for i, sound in zip(index, made):
            audio[i] = sound
    frames, lengths, channels = [], [], []
    for k, (sound, rate) in enumerate(audio):
        drawn: dict = {}
        if augment:
            from ..audio_augment import augment as channel

            sound, rate, drawn = channel(sound, rate, augment, np.random.default_rng(augment_seeds[k]))
        feats = audio_features(sound, rate, n_mels, fmax)  # (T, n_mels)
        frames.append(feats.astype(np.float16))
        lengths.append(len(feats))
        channels.append(drawn)
    return Synthesized(np.concatenate(frames), np.asarray(lengths, dtype=np.int64), channels)


def _worker_main(job_path: str) -> None:
    """Worker process: read a job (JSON), write features.npy, lengths.npy and channels.json beside it."""
    job = json.loads(Path(job_path).read_text())
    utterances = [Utterance(*u) for u in job["utterances"]]
    made = _synthesize_chunk(utterances, job["n_mels"], job["seed"], job["augment"], job["augment_seeds"], job["fmax"])
    out = Path(job_path).parent
    np.save(out / "features.npy", made.features, allow_pickle=False)
    np.save(out / "lengths.npy", made.lengths, allow_pickle=False)
    (out / "channels.json").write_text(json.dumps(made.channels))


def synthesize_features(utterances: Sequence[Utterance], n_mels: int = 40, workers: int = 2,
                        seed: int = 0, augment: Sequence[str] = (), augment_seed: int = 0,
                        fmax: float | None = None) -> Synthesized:
    """Log-mel frames of every utterance (and the channel drawn for each).

    Chunks of ``_CHUNK`` utterances each run in a fresh Python process (``workers`` at a
    time), so the result depends on the utterances, ``seed`` and ``augment_seed`` only;
    utterance i's channel is drawn from ``np.random.default_rng([augment_seed, i])``.
    """
    if not utterances:
        return Synthesized(np.zeros((0, n_mels), np.float16), np.zeros(0, np.int64), [])
    chunks = [list(utterances[i : i + _CHUNK]) for i in range(0, len(utterances), _CHUNK)]
    boot = "import sys; from rnnkit.data.datasets.spoken_digits import _worker_main; _worker_main(sys.argv[1])"
    with tempfile.TemporaryDirectory(prefix="rnnkit-speech-") as tmp:
        def run(k: int) -> Synthesized:
            job_dir = Path(tmp) / f"chunk{k:05d}"
            job_dir.mkdir()
            first = k * _CHUNK
            seeds = [int(np.random.SeedSequence([augment_seed, first + i]).generate_state(1)[0])
                     for i in range(len(chunks[k]))]
            job = {"utterances": [list(u) for u in chunks[k]], "n_mels": n_mels, "seed": seed + k,
                   "augment": list(augment), "augment_seeds": seeds, "fmax": fmax}
            (job_dir / "job.json").write_text(json.dumps(job))
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run([sys.executable, "-c", boot, str(job_dir / "job.json")],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"synthesize_features: the synthesis worker of chunk {k} failed: {tail}")
            return Synthesized(np.load(job_dir / "features.npy", allow_pickle=False),
                               np.load(job_dir / "lengths.npy", allow_pickle=False),
                               json.loads((job_dir / "channels.json").read_text()))

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # threads only wait on processes
            parts = list(pool.map(run, range(len(chunks))))
    return Synthesized(np.concatenate([p.features for p in parts]), np.concatenate([p.lengths for p in parts]),
                       [c for p in parts for c in p.channels])


def cache_root() -> Path:
    """``$RNNKIT_CACHE/speech``, or ``~/.cache/rnnkit/speech``."""
    base = os.environ.get("RNNKIT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "rnnkit") / "speech"


def _cache_key(config: SpokenDigitsConfig, version: str) -> str:
    settings = {"config": asdict(config), "voices": {s: split_voices(config, s) for s in ("train", "val", "test")},
                "espeak": version, "chunk": _CHUNK, "generation": _GENERATION_VERSION, "feature_rate": FEATURE_RATE}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _espeak_version(config: SpokenDigitsConfig) -> str:
    """libespeak-ng's version, from the package metadata (without loading the library here);
    "" when no split uses espeak."""
    from importlib.metadata import PackageNotFoundError, version

    if "espeak" not in config.engines and config.held_out_engine != "espeak":
        return ""
    try:
        return "espeakng-loader " + version("espeakng-loader")
    except PackageNotFoundError:
        raise ValueError("load_spoken_digits: the speech data needs the espeakng-loader package "
                         "(pip install espeakng-loader), which ships libespeak-ng and its voices") from None


def load_spoken_digits(config: SpokenDigitsConfig = SpokenDigitsConfig(), cache_dir: str | os.PathLike | None = None,
                       workers: int = 2) -> dict[str, SpokenDigits]:
    """The train/val/test splits, from the cache or synthesised (then cached) with ``workers`` processes."""
    root = Path(cache_dir) if cache_dir else cache_root()
    folder = root / _cache_key(config, _espeak_version(config))
    splits = ("train", "val", "test")
    if not (folder / "manifest.json").exists():
        utterances = {s: make_utterances(config, s) for s in splits}
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=root))
        try:
            channels = {}
            for k, s in enumerate(splits):
                made = synthesize_features(utterances[s], config.n_mels, workers, seed=1000 * k,
                                           augment=config.augment if s == "train" else (), augment_seed=config.seed,
                                           fmax=config.max_frequency)
                np.save(tmp / f"{s}_features.npy", made.features, allow_pickle=False)
                np.save(tmp / f"{s}_lengths.npy", made.lengths, allow_pickle=False)
                channels[s] = made.channels
            (tmp / "channels.json").write_text(json.dumps(channels))
            manifest = {"config": asdict(config), "voices": {s: split_voices(config, s) for s in splits},
                        "espeak": _espeak_version(config), "utterances": {s: [list(u) for u in utterances[s]] for s in splits}}
            (tmp / "manifest.json").write_text(json.dumps(manifest))
            try:
                tmp.rename(folder)  # atomic: a cache folder is complete or absent
            except OSError:  # another process finished first: keep its folder
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    out = {}
    for s in splits:
        out[s] = SpokenDigits(np.load(folder / f"{s}_features.npy", allow_pickle=False),
                              np.load(folder / f"{s}_lengths.npy", allow_pickle=False),
                              [Utterance(*u) for u in manifest["utterances"][s]])
    return out


if __name__ == "__main__":  # (the workers start through synthesize_features' boot line, not here)
    _worker_main(sys.argv[1])
