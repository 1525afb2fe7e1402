"""Tests for what rnnkit.kernels.cpu trusts in its cache (issue 13): it loads only a library it
built itself (its sha256 recorded then, compared before ``dlopen``), from a cache folder no one
else can write to. Anything else is not loaded, with one warning; the kernels are built again, or
torch operations run, and the layers' forward never sees an exception.

Every test uses a temporary cache (``RNNKIT_CACHE``) and starts with nothing loaded.
"""
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch

import rnnkit
from rnnkit.kernels import cpu
from rnnkit.layers import backends

pytestmark = pytest.mark.skipif(cpu._compiler() is None, reason="no C++ compiler: torch operations run instead")


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """The library rnnkit builds from the package's sources, and its record: one compile for this file."""
    path = tmp_path_factory.mktemp("genuine")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNKIT_CACHE", str(path))
        mp.setattr(cpu, "_library", None)
        assert cpu.load(), "the kernels did not build from the package's sources"
    (library,) = path.glob("fused_kernels_*.so")
    return library, cpu._record(library)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty private cache folder (mode 0700) as ``RNNKIT_CACHE``, and nothing loaded yet."""
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("RNNKIT_CACHE", str(path))
    monkeypatch.setattr(cpu, "_library", None)
    return path


def _library_path(cache):
    """The exact path rnnkit loads the library from in ``cache``, by the module's own key."""
    return cache / f"fused_kernels_{cpu._cache_key(cpu._sources(), cpu._compiler(), cpu._FLAGS)}.so"


def _shared_library(tmp_path, name, code):
    """``code`` (C++) compiled into a shared library ``tmp_path/name``."""
    source, library = tmp_path / f"{name}.cpp", tmp_path / name
    source.write_text(code)
    subprocess.run([cpu._compiler(), "-shared", "-fPIC", str(source), "-o", str(library)], check=True,
                   capture_output=True, timeout=120)
    return library


def _planted(tmp_path, marker):
    """A library whose constructor, run by ``dlopen`` before anything else, creates ``marker``."""
    code = ('#include <cstdio>\n'
            '__attribute__((constructor)) static void planted() {\n'
            f'    if (std::FILE* f = std::fopen({json.dumps(str(marker))}, "w")) std::fclose(f);\n'
            '}\n')
    library = _shared_library(tmp_path, "planted.so", code)
    # It does run when loaded: in another process, so that this one never loads it.
    subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", str(library)], check=True)
    assert marker.exists(), "the planted library's constructor did not run when loaded"
    marker.unlink()
    return library


def _install(library, path, record=None):
    """``library`` copied to ``path`` (mode 0600), with ``record`` (default: its own sha256) beside it."""
    shutil.copyfile(library, path)
    os.chmod(path, 0o600)
    if record is None:
        record = hashlib.sha256(path.read_bytes()).hexdigest()
    cpu._record(path).write_text(record + "\n")
    os.chmod(cpu._record(path), 0o600)


def _assert_peephole_lstm_runs_as_the_reference():
    """A fused LSTM with peepholes runs forward and backward, and equals the reference loop."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(4, 5, peephole=True, dtype=torch.float64)
    x = torch.randn(6, 3, 4, dtype=torch.float64)  # (T, B, input)
    out, (h, c) = layer(x)
    out.sum().backward()
    with backends.only():  # the reference: the cells' own step, looped
        expected, (h_ref, c_ref) = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((h, c), (h_ref, c_ref), rtol=1e-12, atol=1e-12)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- a library rnnkit did not build is never loaded ---------------------------------------------------


@pytest.mark.parametrize("record", ["none", "the genuine library's"])
def test_a_planted_library_is_not_loaded_and_the_kernels_are_built_again(record, cache, genuine, tmp_path, caplog):
    marker = tmp_path / "the planted library ran"
    path, planted = _library_path(cache), _planted(tmp_path, marker)
    _install(planted, path)
    if record == "none":
        cpu._record(path).unlink()
    else:  # only the library was replaced: its bytes no longer match the record
        shutil.copyfile(genuine[1], cpu._record(path))
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        lib = cpu.load()
        x = torch.zeros(1, dtype=torch.float64)
        assert lib and cpu.kernels_for(x) is lib
        _assert_peephole_lstm_runs_as_the_reference()
    assert not marker.exists()  # never loaded, not even once
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"rnnkit: not loading {path}: ") and warning.endswith("; building it again")
    assert ("rnnkit did not build it" if record == "none" else "recorded when rnnkit built it") in warning
    # Built again in its place, with its record: the next process loads it without building.
    assert path.read_bytes() != planted.read_bytes() and cpu._unverified(path) is None


def test_a_library_without_the_kernels_is_refused_and_torch_operations_run(cache, tmp_path, caplog):
    """Its record is right (rnnkit could have built it), so it is loaded, and then refused: one
    warning, and the fused layers run torch operations; no AttributeError reaches them."""
    path = _library_path(cache)
    _install(_shared_library(tmp_path, "empty.so", 'extern "C" int rnnkit_nothing_here = 0;\n'), path)
    assert cpu._unverified(path) is None
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False
        assert cpu.kernels_for(torch.zeros(1)) is None
        _assert_peephole_lstm_runs_as_the_reference()
    (warning,) = _warnings(caplog)
    assert f"{path.name} does not export lstm_forward_f32, lstm_forward_f64" in warning
    assert "(0 of the" in warning and warning.endswith("using torch operations")


def test_a_library_that_does_not_load_is_refused_and_torch_operations_run(cache, tmp_path, caplog):
    """Not a shared library at all, its record right: dlopen fails, one warning, torch operations."""
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"not a shared library\n")
    path = _library_path(cache)
    _install(garbage, path)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.kernels_for(torch.zeros(1)) is None
        _assert_peephole_lstm_runs_as_the_reference()
    (warning,) = _warnings(caplog)
    assert "fused CPU kernels unavailable" in warning and path.name in warning


def test_an_unexpected_error_while_loading_falls_back_too(cache, genuine, monkeypatch, caplog):
    _install(genuine[0], _library_path(cache))

    def broken(lib, symbol):
        raise AttributeError(f"'NoneType' object has no attribute 'decode' ({symbol})")

    monkeypatch.setattr(cpu, "_describe", broken)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False
    (warning,) = _warnings(caplog)
    assert "unavailable (AttributeError: 'NoneType' object has no attribute 'decode'" in warning


@pytest.mark.parametrize("problem", ["a link", "writable by others"])
def test_a_library_that_others_could_change_is_not_verified(problem, cache, genuine, tmp_path):
    path = _library_path(cache)
    if problem == "a link":  # to a copy of the genuine library, its record right
        shutil.copy2(genuine[0], tmp_path / "elsewhere.so")
        path.symlink_to(tmp_path / "elsewhere.so")
        shutil.copy2(genuine[1], cpu._record(path))
        assert "cannot be read" in cpu._unverified(path)
    else:
        _install(genuine[0], path)
        os.chmod(path, 0o666)
        assert f"should be a file of uid {os.getuid()} that no one else can write to, found uid {os.getuid()}, " \
               f"mode 0o666" in cpu._unverified(path)


# -- the cache folder -------------------------------------------------------------------------------


def test_the_cache_folder_is_created_private_and_the_library_loads_from_the_cache(tmp_path, genuine, monkeypatch):
    cache = tmp_path / "new" / "rnnkit"
    monkeypatch.setenv("RNNKIT_CACHE", str(cache))
    monkeypatch.setattr(cpu, "_library", None)
    assert cpu._private_dir(cache) == cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    _install(genuine[0], _library_path(cache))
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: pytest.fail("compiled although cached"))
    lib = cpu.load()
    assert lib and lib._name == str(_library_path(cache))


def test_a_cache_folder_others_can_read_is_used(cache, genuine, monkeypatch):
    """Mode 0755 (as ``mkdir`` makes it with the usual umask): no one else can write there."""
    os.chmod(cache, 0o755)
    _install(genuine[0], _library_path(cache))
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: pytest.fail("compiled although cached"))
    assert cpu.load()


def _assert_refused(caplog, *expected):
    """One warning, with ``expected`` in it, nothing built, and the fused layers run torch operations."""
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.kernels_for(torch.zeros(1)) is None
        _assert_peephole_lstm_runs_as_the_reference()
    (warning,) = _warnings(caplog)
    assert "\n" not in warning and all(text in warning for text in expected), warning
    assert warning.endswith("set RNNKIT_CACHE to a folder of your own); using torch operations")


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o702, 0o1777])
def test_a_cache_folder_others_can_write_to_is_refused(mode, cache, genuine, monkeypatch, caplog):
    _install(genuine[0], _library_path(cache))  # even a genuine library is not loaded from there
    os.chmod(cache, mode)
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: pytest.fail("compiled in a shared folder"))
    _assert_refused(caplog, f"the cache folder {cache} should be a folder of uid {os.getuid()} that no one else "
                            f"can write to (rnnkit creates it with mode 0o700), found uid {os.getuid()}, "
                            f"mode {oct(mode)}")


def test_a_cache_folder_of_another_user_is_refused(cache, genuine, monkeypatch, caplog):
    _install(genuine[0], _library_path(cache))
    if os.getuid() == 0:  # root can give it away
        os.chown(cache, 4321, -1)
        owner, uid = 4321, 0
    else:  # the folder stays ours: we pretend to be someone else
        owner, uid = os.getuid(), os.getuid() + 1
        monkeypatch.setattr(os, "getuid", lambda: uid)
    _assert_refused(caplog, f"the cache folder {cache} should be a folder of uid {uid}",
                    f"found uid {owner}, mode 0o700")


def test_a_cache_folder_in_a_folder_others_can_write_to_is_refused(tmp_path, monkeypatch, caplog):
    """Others could rename the cache folder away and put theirs in its place."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("RNNKIT_CACHE", str(shared / "rnnkit"))
    monkeypatch.setattr(cpu, "_library", None)
    _assert_refused(caplog, f"the folder {shared} above the cache folder {shared / 'rnnkit'} should belong to "
                            f"uid {os.getuid()} or root", "found uid", "mode 0o777")
    assert stat.S_IMODE((shared / "rnnkit").stat().st_mode) == 0o700  # created private all the same


def test_a_cache_folder_in_a_sticky_folder_is_used(tmp_path, genuine, monkeypatch):
    """Like /tmp: others can write there, but not rename or remove what is ours."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    cache = shared / "rnnkit"
    monkeypatch.setenv("RNNKIT_CACHE", str(cache))
    monkeypatch.setattr(cpu, "_library", None)
    assert cpu._private_dir(cache) == cache
    _install(genuine[0], _library_path(cache))
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: pytest.fail("compiled although cached"))
    assert cpu.load()
