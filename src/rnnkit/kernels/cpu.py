"""Fused element-wise CPU kernels for the fused LSTM and GRU, compiled at first use.

Each step of the fused LSTM and GRU runs one matrix product (torch's) and then ~10-25 small
element-wise torch operations of 1-5 us each; at small sizes those dominate. The kernels in
``csrc/`` do a step's element-wise work (gates, layer norms, peepholes, masks; forward and
backward) in one call:

- ``common.h``: the float32/float64 maths, the layer-norm moments and the argument structs;
- ``lstm.cpp``, ``gru.cpp``, ``gate_norm.cpp``: the kernels, each exported for both dtypes
  (``lstm_forward_f32``, ``lstm_forward_f64``, ...);
- ``layout.cpp``: ``rnnkit_layout_lstm_args``, ``rnnkit_layout_gru_args`` and
  ``rnnkit_layout_norm_args``, which describe the structs to this loader;
- ``threads.cpp``: ``rnnkit_set_thread_limit``, the most threads a step kernel may use.

**Build.** The sources are plain C++ (no torch headers), shipped as package data, and compiled
with the machine's C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``) in one invocation
over every ``.cpp`` file into one shared library. Nothing needs a compiler at install time.

**Threads.** Built with OpenMP, each step kernel splits its batch rows over torch's intra-op
threads (from a few thousand hidden units per step; ``csrc/common.h``): the library links the
OpenMP runtime by its name, ``libgomp.so.1``, which is the one torch has loaded, so they share
one pool of threads, and every row's arithmetic is the same whichever thread computes it. Where
the loader cannot see that the runtime is torch's (``_openmp_runtimes``), the kernels stay on
one thread; where the compiler has no OpenMP, the library is built without it (one thread).

**Cache.** The library is cached under ``$RNNKIT_CACHE`` (default ``rnnkit`` in ``$XDG_CACHE_HOME``
or ``~/.cache``) as ``fused_kernels_<key>.so``, the key a hash of every source and header file (name
and content), the flags, the compiler and the CPU (the code is built with ``-march=native``); beside
it, ``fused_kernels_<key>.so.sha256`` records the sha256 of the library as it was built. A changed
source therefore builds a new library; concurrent builders each compile in a temporary folder and
install their result with atomic renames, the record first, then the library.

**Trust.** Loading a library runs its code (its constructors run inside ``dlopen``), so the loader
loads only a library it built itself, in a folder no one else can write to:

- the cache folder, created with mode 0700, must belong to this user and be writable by no one else
  (a folder of mode 0755 is accepted), and every folder above it must belong to this user or root and
  be writable by no one else unless it is sticky like ``/tmp`` (else another user could rename the
  cache folder and put their own in its place). A folder that fails is not used: one warning names it,
  what was expected and what was found, and torch operations run;
- before ``dlopen``, the library's bytes are read once (not through a link; a regular file of this
  user's that no one else can write) and their sha256 compared with the record. A library without a
  record, with another hash, or failing those checks, is not loaded: one warning, and it is built
  again (into a temporary file, then renamed over it).

``dlopen`` then maps the file at the path just hashed, not a private copy: between the two only this
user or root could change it, since no one else can write in the folder or to the file, and either
could as well change rnnkit itself.

**Layout check.** Python fills the C++ structs through ctypes copies (``LSTMArgs``, ``GRUArgs``,
``NormArgs``); a field changed on one side only would make a kernel read the wrong pointer.
So after loading, the loader checks that every kernel it calls is exported, and compares each
struct with the library's own description of it (its size, and each field's name, offset and
size, in declaration order, from ``rnnkit_layout_*``). A library that lacks a symbol or
disagrees is refused, with one warning that names the struct and the first differing field.

**Operators.** ctypes is opaque to autograd and ``torch.compile``: the modules that call the
kernels (``lstm_bptt``, ``gru_bptt``, ``gate_norm``) do so inside torch custom operators
(``rnnkit::*``) that rebuild these structs from their tensor arguments at each call. The
one-time work here (the build, the load and its checks) runs outside any trace: ``applies``
asks ``_loaded``, which ``torch.compile`` calls eagerly and keeps as a constant.

**Fallback.** Without a compiler, with a failed build, with a refused library or cache folder, with
``RNNKIT_KERNELS=0`` (or ``set_enabled(False)``), or for dtypes other than float32/float64,
``kernels_for`` returns None and the fused layers run the same steps with torch operations.
The float32 kernels use their own vectorisable ``exp`` (Cephes' polynomial), so sigmoid and
tanh are within a few ulp of the exact values, as torch's are, but not bit for bit the same as
torch's; float64 uses ``std::exp`` and ``std::tanh``.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import itertools
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

__all__ = ["LSTMArgs", "GRUArgs", "NormArgs", "ScanArgs", "pointer", "set_enabled", "applies", "kernels_for", "suffix", "load"]

log = logging.getLogger(__name__)

_CSRC = importlib.resources.files(__package__) / "csrc"  # the C++ sources and headers (package data)
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC", "-std=c++14", "-pthread"]
# Where the compiler has no OpenMP: one thread per step kernel, the simd pragmas still honoured.
_SERIAL_FLAGS = [flag if flag != "-fopenmp" else "-fopenmp-simd" for flag in _FLAGS]


class LSTMArgs(ctypes.Structure):
    """``LSTMArgs`` of ``csrc/common.h``: one LSTM sequence's buffers, gates i, f, g, o; the
    shapes of the buffers are commented there. Null pointers: not used."""

    _fields_ = [("T", ctypes.c_int64), ("B", ctypes.c_int64), ("H", ctypes.c_int64), ("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in (
            "gx", "acts", "z", "rstd_hh", "gain_hh", "peep", "ln_w", "ln_b", "stats_c", "h0", "hs", "cs", "tcs",
            "keep", "d_out", "dh", "dc", "carry", "dG", "dZ", "d_cout", "scratch",
        )
    ]


class GRUArgs(ctypes.Structure):
    """``GRUArgs`` of ``csrc/common.h``: one GRU sequence's buffers, gates r, z, n; the shapes
    of the buffers are commented there. Null pointers: not used."""

    _fields_ = [("T", ctypes.c_int64), ("B", ctypes.c_int64), ("H", ctypes.c_int64), ("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in (
            "gx", "h0", "hs", "acts", "zp", "zn", "rstd", "gain", "bias", "ghn", "rh", "keep",
            "d_out", "dh", "carry", "dG", "dGh", "dZ", "dZn", "drh", "scratch",
        )
    ]


class NormArgs(ctypes.Structure):
    """``NormArgs`` of ``csrc/common.h``: the per-gate layer norm of a whole (rows, H) tensor,
    row r in gate r % gates."""

    _fields_ = [(name, ctypes.c_int64) for name in ("rows", "H", "gates", "threads")] + [("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in ("z", "out", "xhat", "rstd", "gain", "bias", "dy", "dz", "d_gain", "d_bias")
    ]


class ScanArgs(ctypes.Structure):
    """``ScanArgs`` of ``csrc/common.h``: one direction of a minGRU (kind 0) or minLSTM (kind 1)
    layer over a whole sequence."""

    _fields_ = [(name, ctypes.c_int64) for name in ("T", "B", "H", "kind", "threads")] + [
        (name, ctypes.c_void_p) for name in ("xp", "h0", "keep", "hs", "d_hs", "dxp", "dh0")
    ]


# What the library must export, each kernel as <name>_f32 and <name>_f64. Step kernels take
# (const Args*, int64_t t), the gate norm kernels (const Args*); all return nothing.
_DTYPES = ("f32", "f64")
_STEP_KERNELS = {
    "lstm_forward": LSTMArgs, "lstm_backward": LSTMArgs, "gru_forward": GRUArgs, "gru_backward": GRUArgs,
    "gru_forward_a": GRUArgs, "gru_forward_b": GRUArgs, "gru_backward_b": GRUArgs, "gru_backward_c": GRUArgs,
}
_WHOLE_KERNELS = {"gate_norm_forward": NormArgs, "gate_norm_backward": NormArgs,
                  "min_scan_forward": ScanArgs, "min_scan_backward": ScanArgs}
# Other functions the library exports: rnnkit_set_thread_limit(int64_t) (threads.cpp).
_OTHER_SYMBOLS = ("rnnkit_set_thread_limit",)
# The library's description of each struct (layout.cpp): int64_t f(int64_t* out, const char** names, int64_t n).
_LAYOUTS = {"rnnkit_layout_lstm_args": LSTMArgs, "rnnkit_layout_gru_args": GRUArgs, "rnnkit_layout_norm_args": NormArgs,
            "rnnkit_layout_scan_args": ScanArgs}


def pointer(t: Tensor | None) -> int | None:
    """The data pointer of a contiguous tensor, None (a null pointer: not used) for None."""
    if t is None:
        return None
    assert t.is_contiguous()
    return t.data_ptr()


_lock = threading.Lock()
_library = None  # the loaded library, False once it failed (then never tried again)
_enabled = os.environ.get("RNNKIT_KERNELS", "1") != "0"


def set_enabled(value: bool) -> bool:
    """Use the kernels (True) or torch operations (False); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(value)
    return previous


def applies(like: Tensor) -> bool:
    """Whether the kernels run for tensors like ``like``: enabled, CPU, float32/64, and the library
    loads. Safe under ``torch.compile``: the library is built (or found) outside the trace, once."""
    return (_enabled and like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
            and _loaded())


def kernels_for(like: Tensor) -> ctypes.CDLL | None:
    """The loaded library if the kernels apply to tensors like ``like`` (``applies``), else None."""
    return (load() or None) if applies(like) else None


@torch.compiler.assume_constant_result
def _loaded() -> bool:
    """Whether the library is loaded (building it on the first call). ``torch.compile`` calls it
    while tracing, outside the trace, and keeps the answer as a constant of the graph: compiling
    never traces the build, the cache lookup or ctypes."""
    return bool(load())


def suffix(dtype: torch.dtype) -> str:
    """The suffix of the kernels for ``dtype``: ``lstm_forward_`` + ``suffix(x.dtype)``."""
    return "f32" if dtype == torch.float32 else "f64"


def load() -> ctypes.CDLL | Literal[False]:
    """The library (a ``ctypes.CDLL``), built or taken from the cache on the first call, or False
    if it cannot be built or is refused; then one warning says why, and later calls return False
    without trying again."""
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            try:
                _library = _open(_build())
            except Exception as e:  # whatever fails here, torch operations run instead
                expected = isinstance(e, (OSError, subprocess.SubprocessError, _Refused))
                log.warning("rnnkit: fused CPU kernels unavailable (%s); using torch operations",
                            e if expected else f"{type(e).__name__}: {e}")
                _library = False
    return _library


class _Refused(Exception):
    """A cache folder that others could write to (``_private_dir``), or a library that loaded but
    whose kernels must not be called: a kernel or a struct description is missing, or a struct's
    layout differs from its ctypes copy."""


def _sources(directory=None) -> dict[str, bytes]:
    """Every C++ source and header of ``directory`` (default: the package's ``csrc``), by name."""
    directory = _CSRC if directory is None else directory
    try:
        files = {f.name: f.read_bytes() for f in directory.iterdir() if f.name.endswith((".cpp", ".h"))}
    except OSError as e:
        raise OSError(f"cannot read the C++ sources in {directory}: {e}") from e
    if not any(name.endswith(".cpp") for name in files):
        raise OSError(f"no C++ sources (*.cpp) in {directory}, found {sorted(files) or 'nothing'}")
    return dict(sorted(files.items()))


def _cpu_key() -> str:
    """What the compiled code depends on besides the source: the CPU's features (-march=native)."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("flags", "Features", "model name")))
    except OSError:
        pass
    return text


def _compiler() -> str | None:
    """The C++ compiler to build with: ``$CXX``, else the first of c++, g++, clang++ on the PATH."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_key(sources: dict[str, bytes], compiler: str, flags: list[str] | None = None) -> str:
    """A hash of everything the library depends on: each file's name (``#include`` finds files by
    name) and content, the flags (default ``_FLAGS``), the compiler and the CPU."""
    digest = hashlib.sha256()
    for name, content in sources.items():
        digest.update(name.encode() + b"\0" + content + b"\0")
    digest.update("\n".join([" ".join(_FLAGS if flags is None else flags), compiler, _cpu_key()]).encode())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    """``$RNNKIT_CACHE``, else ``rnnkit`` in ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    cache = os.environ.get("RNNKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnkit"
    return Path(cache)


def _private_dir(path: Path) -> Path:
    """``path`` (created with mode 0700 if missing) with its links resolved, once no one but this
    user and root can write to it or replace it: it belongs to this user, no one else may write to
    it, and every folder above it belongs to this user or root and no one else may write to it
    unless it is sticky (like ``/tmp``). Raises ``_Refused`` otherwise, saying what was found."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the folders above: the default mode
        real = Path(os.path.realpath(path))  # checked, then used: a link swapped later changes nothing
        st = os.stat(real)
    except OSError as e:
        raise OSError(f"cannot create the cache folder {path}: {e}") from e
    uid = os.getuid()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise _Refused(f"the cache folder {real} should be a folder of uid {uid} that no one else can write to "
                       f"(rnnkit creates it with mode 0o700), found {_described(st)}; set RNNKIT_CACHE to "
                       f"a folder of your own")
    for parent in real.parents:
        st = os.stat(parent)
        if st.st_uid not in (uid, 0) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise _Refused(f"the folder {parent} above the cache folder {real} should belong to uid {uid} or "
                           f"root and be writable by no one else unless sticky (or others can replace the cache "
                           f"folder), found {_described(st)}; set RNNKIT_CACHE to a folder of your own")
    return real


def _described(st: os.stat_result) -> str:
    """What a folder's or file's owner and mode are, for the warnings: ``uid 1000, mode 0o777``."""
    kind = "" if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) else "not a folder or file, "
    return f"{kind}uid {st.st_uid}, mode {oct(stat.S_IMODE(st.st_mode))}"


def _record(path: Path) -> Path:
    """Where the sha256 of the library at ``path`` is recorded when rnnkit builds it."""
    return path.with_name(path.name + ".sha256")


def _read_private(path: Path) -> bytes:
    """The bytes of ``path``, a regular file of this user's that no one else can write to, read
    without following a link; raises OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # a link: ELOOP
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise OSError(f"{path.name} should be a file of uid {os.getuid()} that no one else can write to, "
                          f"found {_described(st)}")
        return f.read()


def _unverified(path: Path) -> str | None:
    """Why the library at ``path`` must not be loaded, None if its bytes have the sha256 recorded
    when rnnkit built it (``_record``). The file is read once, here, before anything loads it."""
    try:
        recorded = _read_private(_record(path)).decode(errors="replace").strip()
    except FileNotFoundError:
        return (f"there is no record of its sha256 ({_record(path).name}): rnnkit did not build it, or an "
                f"older version did")
    except OSError as e:
        return f"its record cannot be read: {e}"
    try:
        digest = hashlib.sha256(_read_private(path)).hexdigest()
    except OSError as e:
        return f"it cannot be read: {e}"
    if digest != recorded:
        return f"its sha256 is {digest}, not the {recorded[:64]!r} recorded when rnnkit built it"
    return None


def _build() -> Path:
    """The path of the library built from the package's sources, compiled unless cached (and
    verified, ``_unverified``) in the private cache folder (``_private_dir``): with OpenMP
    (``_FLAGS``), or where the compiler has none, without (``_SERIAL_FLAGS``)."""
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C++ compiler found ($CXX, c++, g++, clang++)")
    sources = _sources()
    cache = _private_dir(_cache_dir())
    paths = [(flags, cache / f"fused_kernels_{_cache_key(sources, compiler, flags)}.so")
             for flags in (_FLAGS, _SERIAL_FLAGS)]
    for flags, path in paths:
        if os.path.lexists(path):
            problem = _unverified(path)
            if problem is None:
                return path
            log.warning("rnnkit: not loading %s: %s; building it again", path, problem)
            return _compile(compiler, sources, flags, path)
    try:
        return _compile(compiler, sources, *paths[0])
    except OSError as e:
        log.info("rnnkit: building the fused CPU kernels with OpenMP failed (%s); building without", e)
        return _compile(compiler, sources, *paths[1])


def _compile(compiler: str, sources: dict[str, bytes], flags: list[str], path: Path) -> Path:
    """Compile ``sources`` with ``flags`` into ``path`` (in the cache folder), and record its sha256."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        # Compile the very bytes that were hashed, not the package files, which could change meanwhile.
        for name, content in sources.items():
            (Path(tmp) / name).write_bytes(content)
        units = [str(Path(tmp) / name) for name in sources if name.endswith(".cpp")]
        out = Path(tmp) / "kernels.so"
        result = subprocess.run([compiler, *flags, *units, "-o", str(out)], capture_output=True, text=True,
                                timeout=300)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
            raise OSError(f"{compiler} failed with exit code {result.returncode}: {errors[0] if errors else 'no output'}")
        os.chmod(out, 0o600)  # whatever the umask: a file others can write to is not loaded
        record = Path(tmp) / "kernels.so.sha256"
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(hashlib.sha256(out.read_bytes()).hexdigest() + "\n")
        # Atomic, the record first: in a fresh cache a reader sees no library yet, or one with its
        # record. Concurrent builders each install their own; the compiler's output is the same for the
        # same input (gcc's is), so whichever record wins matches whichever library wins. Where it is
        # not, a later load can find a mismatch: one warning, and it builds again.
        os.replace(record, _record(path))
        os.replace(out, path)
    log.info("rnnkit: compiled fused CPU kernels into %s", path)
    return path


def _open(path: Path) -> ctypes.CDLL:
    """The library at ``path`` (which ``_build`` verified or built: see **Trust** above), once it is
    known to export every kernel and to agree with the ctypes structs; raises ``_Refused`` otherwise.
    Its step kernels run on one thread unless the OpenMP runtime it uses is the one torch had loaded
    already (see ``_openmp_runtimes``)."""
    before = _openmp_runtimes()
    lib = ctypes.CDLL(str(path))
    kernels = {**_STEP_KERNELS, **_WHOLE_KERNELS}
    expected = [f"{name}_{dtype}" for name in kernels for dtype in _DTYPES] + list(_LAYOUTS) + list(_OTHER_SYMBOLS)
    missing = [symbol for symbol in expected if not hasattr(lib, symbol)]
    if missing:
        raise _Refused(f"{path.name} does not export {', '.join(missing)}, which {__name__} calls "
                       f"({len(expected) - len(missing)} of the {len(expected)} expected symbols are there)")
    for symbol, struct in _LAYOUTS.items():
        difference = _layout_difference(struct, *_describe(lib, symbol))
        if difference:
            raise _Refused(f"{struct.__name__} differs from the library's ({path.name}): {difference}")
    for name, struct in kernels.items():
        for dtype in _DTYPES:
            fn = getattr(lib, f"{name}_{dtype}")
            fn.argtypes = [ctypes.POINTER(struct)] + [ctypes.c_int64] * (name in _STEP_KERNELS)
            fn.restype = None
    lib.rnnkit_set_thread_limit.argtypes, lib.rnnkit_set_thread_limit.restype = [ctypes.c_int64], None
    after = _openmp_runtimes()
    if not before or after != before:  # unknown, torch runs none, or the library brought another one
        lib.rnnkit_set_thread_limit(1)
        log.info("rnnkit: the fused CPU kernels run on one thread (OpenMP runtimes before loading them: %s, "
                 "after: %s)", before, after)
    return lib


_OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp")  # file names of GNU's, LLVM's and Intel's runtimes


def _openmp_runtimes() -> frozenset[str] | None:
    """The OpenMP runtimes mapped into this process (their real paths), None where that cannot be
    read (no /proc). torch's is there once torch is imported; a library linking another one (say
    torch uses LLVM's, the compiler GNU's) would bring a second pool of threads to fight torch's."""
    try:
        with open("/proc/self/maps") as f:
            lines = f.readlines()
    except OSError:
        return None
    paths = {parts[5].strip() for parts in (line.split(maxsplit=5) for line in lines) if len(parts) == 6}
    return frozenset(os.path.realpath(p) for p in paths if os.path.basename(p).startswith(_OPENMP_RUNTIMES))


def _describe(lib: ctypes.CDLL, symbol: str) -> tuple[int, list[tuple[str, int, int]]]:
    """A struct as the compiler laid it out: its size and its fields' (name, offset, size), in
    declaration order, from the library's ``symbol`` (see ``csrc/layout.cpp``)."""
    fn = getattr(lib, symbol)
    fn.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64]
    fn.restype = ctypes.c_int64
    n = fn(None, None, 0)  # how many fields
    if not 0 <= n <= 1024:
        raise _Refused(f"{symbol} reports {n} fields, expected between 0 and 1024")
    out, names = (ctypes.c_int64 * (1 + 2 * n))(), (ctypes.c_char_p * n)()
    fn(out, names, n)
    fields = [(names[k].decode(), out[1 + 2 * k], out[2 + 2 * k]) for k in range(n)]
    return out[0], fields


def _layout_difference(struct: type[ctypes.Structure], size: int, fields: list[tuple[str, int, int]]) -> str | None:
    """Where ``struct`` differs from the library's description (size, fields), first field first;
    None if they agree."""
    ours = [(name, getattr(struct, name).offset, getattr(struct, name).size) for name, *_ in struct._fields_]

    def text(field):
        return "nothing" if field is None else f"{field[0]!r} (offset {field[1]}, {field[2]} bytes)"

    for k, (theirs_k, ours_k) in enumerate(itertools.zip_longest(fields, ours)):
        if theirs_k != ours_k:
            return f"field {k} is {text(theirs_k)} in the library, {text(ours_k)} in {__name__}"
    if size != ctypes.sizeof(struct):
        return f"its size is {size} bytes in the library, {ctypes.sizeof(struct)} in {__name__}"
    return None
