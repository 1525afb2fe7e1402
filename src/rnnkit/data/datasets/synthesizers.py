"""The speech synthesisers that install offline, behind one call: espeak-ng, flite and Festival.

- ``espeak``: libespeak-ng and its voices from the espeakng-loader package (pip), through
  ctypes (:class:`Espeak`); 8 English accents x 17 voice
  variants; speaking rate and pitch are its own parameters.
- ``flite``: Debian's ``flite`` binary and its built-in voices (kal at 8 kHz; kal16, awb, rms,
  slt at 16 kHz); the rate through ``duration_stretch``.
- ``festival``: Debian's ``festival`` with the diphone voices kal and ked
  (``festvox-kallpc16k``, ``festvox-kdlpc16k``) and the HTS voice slt (``festvox-us-slt-hts``,
  32 kHz); the rate through ``Duration_Stretch`` (the HTS engine's speed rate ``-r`` for slt),
  one Festival process per batch.

Rates are words per minute (espeak's scale; the others stretch durations by 175 / rate, 175
being espeak's default). Pitch is espeak's 0-99 scale (50 = the voice's own); flite and Festival
have no comparable control for every voice, so their audio is pitch-shifted afterwards by
(pitch - 50) / 12.5 semitones (+-2 semitones for pitch 25-75).

An engine that is not installed is reported by :func:`available_engines` (and skipped by the
data sets with one log line); :func:`synthesize` raises ``EngineUnavailable`` naming what to
install.
"""
from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Espeak", "ESPEAK_RATE", "ENGINES", "ENGINE_VOICES", "EngineUnavailable", "available_engines", "engine_available",
           "synthesize", "rate_stretch", "pitch_semitones"]

ENGINES: tuple[str, ...] = ("espeak", "flite", "festival")
# The voices of flite and Festival (espeak's: spoken_digits.voice_split()). awb_time is left
# out: it is flite's limited-domain voice, which only speaks the time of day.
ENGINE_VOICES: dict[str, tuple[str, ...]] = {
    "flite": ("kal", "kal16", "awb", "rms", "slt"),
    "festival": ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"),
}
_INSTALL = {"espeak": "pip install espeakng-loader", "flite": "apt-get install flite",
            "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}
ESPEAK_RATE = 22050  # Hz, what libespeak-ng produces
_DEFAULT_RATE = 175.0  # words per minute: espeak's default, the rate of a stretch of 1


class EngineUnavailable(RuntimeError):
    """A synthesiser is not installed on this machine."""


def rate_stretch(rate: float) -> float:
    """The duration stretch of flite / Festival that speaks at ``rate`` words per minute."""
    return _DEFAULT_RATE / float(rate)


def pitch_semitones(pitch: float) -> float:
    """The pitch shift (semitones) applied to flite / Festival audio for espeak pitch ``pitch``."""
    return (float(pitch) - 50.0) / 12.5


@functools.cache
def engine_available(engine: str) -> bool:
    """Whether ``engine`` synthesises on this machine (checked once: a short utterance per voice)."""
    if engine == "espeak":
        from importlib.util import find_spec

        return find_spec("espeakng_loader") is not None
    if engine not in ENGINE_VOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    try:
        return all(len(audio) > 0 for audio, _ in _synthesize_external(engine, [("one", voice, 175, 50)
                                                                                for voice in ENGINE_VOICES[engine]]))
    except EngineUnavailable:
        return False


def available_engines() -> tuple[str, ...]:
    """The engines of ENGINES installed here, in that order."""
    return tuple(e for e in ENGINES if engine_available(e))


def synthesize(engine: str, utterances: Sequence[tuple[str, str, int, int]]) -> list[tuple[np.ndarray, int]]:
    """(float32 audio (N,), sample rate) of each (text, voice, rate, pitch), in order.

    ``text`` is words of letters and spaces (the digit words). espeak runs in this process (its
    output depends slightly on what it said before: see ``spoken_digits``); flite runs once per
    utterance, Festival once per call.
    """
    if engine == "espeak":
        espeak = Espeak.get()
        return [(espeak.synthesize(text, voice, rate, pitch).astype(np.float32) / 32768.0, ESPEAK_RATE)
                for text, voice, rate, pitch in utterances]
    if engine not in ENGINE_VOICES:
        raise ValueError(f"synthesize: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    from ..audio_augment import pitch_shift

    out = []
    for (audio, sr), (_, _, _, pitch) in zip(_synthesize_external(engine, utterances), utterances):
        shift = pitch_semitones(pitch)
        out.append((pitch_shift(audio, sr, shift) if shift else audio, sr))
    return out


# -- espeak-ng through ctypes -------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesise into the callback, return when done
_POS_CHARACTER = 1  # espeak_POSITION_TYPE
_CHARS_UTF8 = 1  # espeak_Synth flags
_RATE, _PITCH = 1, 3  # espeak_PARAMETER
# int callback(short *wav, int numsamples, espeak_EVENT *events); return 0 to go on.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """libespeak-ng from espeakng-loader, in synchronous mode: ``Espeak.get().synthesize(text, voice)``.

    The library is one per process, so there is one instance (``Espeak.get()``). Its output
    depends slightly on what it synthesised before in the same process (see spoken_digits' module
    docstring); ``synthesize_features`` runs it in fresh processes for reproducible data.
    """

    _instance: "Espeak | None" = None

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ModuleNotFoundError:
            raise ValueError("Espeak: the speech data needs the espeakng-loader package "
                             "(pip install espeakng-loader), which ships libespeak-ng and its voices") from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"Espeak: libespeak-ng initialisation returned {rate}, expected {ESPEAK_RATE} (Hz)")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept referenced: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self.version = lib.espeak_Info(None).decode()

    def _collect(self, wav, numsamples, events) -> int:
        if wav and numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def synthesize(self, text: str, voice: str = "en", rate: int = 175, pitch: int = 50) -> np.ndarray:
        """int16 samples (N,) at ``ESPEAK_RATE`` of ``text`` spoken by ``voice`` ("en-us+m3")."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"Espeak: voice {voice!r} is not an espeak-ng voice (e.g. 'en-us' or 'en-us+m3')")
        self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks = []
        data = text.encode()
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise RuntimeError(f"Espeak: espeak_Synth failed with status {status} for {text!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)

    def set_random_seed(self, seed: int) -> None:
        """Seed libespeak-ng's own random generator (its voices vary a little at random)."""
        self.lib.espeak_ng_SetRandSeed(ctypes.c_int(seed))


def _synthesize_external(engine: str, utterances: Sequence[tuple[str, str, int, int]]) -> list[tuple[np.ndarray, int]]:
    """flite's or Festival's audio at its own rate and pitch (no pitch shift)."""
    import soundfile as sf

    for text, voice, rate, _ in utterances:
        if voice not in ENGINE_VOICES[engine]:
            raise ValueError(f"synthesize: voice {voice!r} is not a {engine} voice ({', '.join(ENGINE_VOICES[engine])})")
        if not text or not all(c.isalpha() or c == " " for c in text):
            raise ValueError(f"synthesize: text must be words of letters and spaces, got {text!r}")
    binary = "flite" if engine == "flite" else "festival"
    if shutil.which(binary) is None:
        raise EngineUnavailable(f"synthesize: {engine} is not installed ({_INSTALL[engine]})")
    with tempfile.TemporaryDirectory(prefix=f"rnnkit-{engine}-") as tmp:
        paths = [Path(tmp) / f"u{k:05d}.wav" for k in range(len(utterances))]
        if engine == "flite":
            for (text, voice, rate, _), path in zip(utterances, paths):
                _run([binary, "-voice", voice, "--setf", f"duration_stretch={rate_stretch(rate):.4f}",
                      "-t", text, "-o", str(path)], engine)
        else:
            script = []
            for (text, voice, rate, _), path in zip(utterances, paths):
                script += [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {rate_stretch(rate):.4f})"]
                if voice.endswith("_hts"):  # the HTS engine ignores Duration_Stretch: its own speed rate
                    script.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" '
                                  f'{1 / rate_stretch(rate):.4f}))))')
                script += [f'(set! utt (Utterance Text "{text}"))', "(utt.synth utt)",
                           f'(utt.save.wave utt "{path}" \'riff)']
            (Path(tmp) / "batch.scm").write_text("\n".join(script) + "\n")
            _run([binary, "-b", str(Path(tmp) / "batch.scm")], engine)
        out = []
        for path in paths:
            if not path.is_file():
                raise EngineUnavailable(f"synthesize: {engine} wrote no audio for {path.name} "
                                        f"(is every voice installed? {_INSTALL[engine]})")
            audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
            out.append((audio.mean(axis=1), int(sr)))
    return out


def _run(argv: list[str], engine: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineUnavailable(f"synthesize: {engine} failed ({tail}); {_INSTALL[engine]}")
