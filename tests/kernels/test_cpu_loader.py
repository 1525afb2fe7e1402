"""Tests for rnnkit.kernels.cpu: building the C++ kernels shipped in rnnkit/kernels/csrc, the
cache, the checks the loader makes before it uses a library, and the fallback without one.

What the kernels compute, for every variant, is checked against the torch step loop in
tests/engine/test_fused.py; here one LSTM step through the structs, as a smoke test of the
loaded library. Every test builds into a temporary cache, never the user's.
"""
import ctypes
import logging
import shutil

import pytest
import torch

from rnnkit.kernels import cpu

needs_compiler = pytest.mark.skipif(cpu._compiler() is None, reason="no C++ compiler: torch operations run instead")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder holding the library built from the package's sources: one compile for this file."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RNNKIT_CACHE", str(path))
        mp.setattr(cpu, "_library", None)
        assert cpu.load(), "the kernels did not build from the package's sources"
    return path


@pytest.fixture
def fresh(cache, monkeypatch):
    """``cache`` as the cache, and nothing loaded yet: the next ``load()`` starts over."""
    monkeypatch.setenv("RNNKIT_CACHE", str(cache))
    monkeypatch.setattr(cpu, "_library", None)
    return cache


def _copy_sources(tmp_path):
    csrc = tmp_path / "csrc"
    shutil.copytree(str(cpu._CSRC), csrc)
    return csrc


def test_the_sources_are_the_package_files():
    names = set(cpu._sources())
    assert {"common.h", "lstm.cpp", "gru.cpp", "gate_norm.cpp", "layout.cpp"} <= names
    assert all(name.endswith((".cpp", ".h")) for name in names)


@needs_compiler
def test_builds_once_then_the_cache_is_reused(fresh, monkeypatch):
    built = list(fresh.glob("fused_kernels_*.so"))
    assert len(built) == 1 and not list(fresh.glob("tmp*"))  # the temporary build folder is gone
    assert cpu._unverified(built[0]) is None  # its sha256 recorded beside it (tests/kernels/test_cache_trust.py)
    mtime = built[0].stat().st_mtime_ns
    monkeypatch.setattr(cpu.subprocess, "run", lambda *a, **k: pytest.fail("compiled although cached"))
    lib = cpu.load()
    assert lib and lib._name == str(built[0])
    assert list(fresh.glob("fused_kernels_*.so")) == built and built[0].stat().st_mtime_ns == mtime
    assert cpu.load() is lib  # and loaded once


def test_a_changed_source_changes_the_cache_key(tmp_path):
    csrc = _copy_sources(tmp_path)
    key = cpu._cache_key(cpu._sources(csrc), "c++")
    assert key == cpu._cache_key(cpu._sources(), "c++")  # the same bytes, the same key
    keys = {key}
    for path in sorted(csrc.iterdir()):  # every source and header counts
        original = path.read_bytes()
        path.write_bytes(original + b"\n// changed\n")
        keys.add(cpu._cache_key(cpu._sources(csrc), "c++"))
        path.write_bytes(original)
    (csrc / "extra.h").write_text("// a new header\n")
    keys.add(cpu._cache_key(cpu._sources(csrc), "c++"))
    assert len(keys) == len(list(csrc.iterdir())) + 1
    assert cpu._cache_key(cpu._sources(), "clang++") != key  # and the compiler


def _without(name):
    return [field for field in cpu.LSTMArgs._fields_ if field[0] != name]


@needs_compiler
@pytest.mark.parametrize("fields, expected", [
    (_without("gx"), "field 4 is 'gx' (offset 32, 8 bytes) in the library, 'acts' (offset 32, 8 bytes)"),
    ([(n, ctypes.c_float if n == "eps" else t) for n, t in cpu.LSTMArgs._fields_],
     "field 3 is 'eps' (offset 24, 8 bytes) in the library, 'eps' (offset 24, 4 bytes)"),
    (cpu.LSTMArgs._fields_ + [("extra", ctypes.c_void_p)], "field 26 is nothing in the library, 'extra'"),
], ids=["field removed", "field resized", "field added"])
def test_a_struct_that_differs_from_the_library_is_refused(fields, expected, fresh, monkeypatch, caplog):
    class LSTMArgs(ctypes.Structure):  # what the Python side would be after a change the C++ did not get
        _fields_ = fields

    monkeypatch.setitem(cpu._LAYOUTS, "rnnkit_layout_lstm_args", LSTMArgs)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False  # no exception: torch operations run instead
        assert cpu.kernels_for(torch.zeros(1)) is None
    assert len(caplog.records) == 1
    assert "LSTMArgs differs from the library's" in caplog.text and expected in caplog.text


@needs_compiler
def test_a_struct_of_another_size_is_refused(fresh):
    """Fields that agree but a size that does not (padding at the end): still refused."""
    size, fields = cpu._describe(cpu.load(), "rnnkit_layout_lstm_args")
    assert cpu._layout_difference(cpu.LSTMArgs, size, fields) is None
    assert cpu._layout_difference(cpu.LSTMArgs, size + 8, fields) == (
        f"its size is {size + 8} bytes in the library, {size} in rnnkit.kernels.cpu")


@needs_compiler
def test_a_library_lacking_a_kernel_is_refused(tmp_path, monkeypatch, caplog):
    csrc = _copy_sources(tmp_path)
    gru = csrc / "gru.cpp"
    export = "RNNKIT_EXPORT(gru_backward_c, GRUArgs)\n"
    assert export in gru.read_text()
    gru.write_text(gru.read_text().replace(export, ""))
    monkeypatch.setattr(cpu, "_CSRC", csrc)
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "_library", None)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False
    assert len(caplog.records) == 1 and "does not export gru_backward_c_f32, gru_backward_c_f64" in caplog.text
    assert len(list((tmp_path / "cache").glob("fused_kernels_*.so"))) == 1  # built, then refused


@needs_compiler
def test_a_library_lacking_a_struct_description_is_refused(fresh, monkeypatch, caplog):
    monkeypatch.setitem(cpu._LAYOUTS, "rnnkit_layout_peephole_args", cpu.LSTMArgs)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False
    assert len(caplog.records) == 1 and "does not export rnnkit_layout_peephole_args" in caplog.text


def test_without_a_compiler_torch_operations_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))  # nothing cached here
    monkeypatch.setenv("CXX", "")
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    monkeypatch.setattr(cpu, "_library", None)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.kernels_for(torch.zeros(1)) is None
        assert cpu.load() is False  # not tried again: one warning
    assert len(caplog.records) == 1
    assert "unavailable (no C++ compiler found" in caplog.text and "using torch operations" in caplog.text


@needs_compiler
def test_without_the_sources_torch_operations_run(tmp_path, monkeypatch, caplog):
    """A wheel built without its package data."""
    monkeypatch.setattr(cpu, "_CSRC", tmp_path)
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "_library", None)
    with caplog.at_level(logging.WARNING, logger=cpu.__name__):
        assert cpu.load() is False
    assert f"no C++ sources (*.cpp) in {tmp_path}, found nothing" in caplog.text


@needs_compiler
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_lstm_forward_kernel_equals_the_lstm_equations(dtype, tolerance, fresh):
    lib = cpu.load()
    T, B, H = 2, 2, 3  # time, batch, hidden
    gen = torch.Generator().manual_seed(0)
    gx = torch.randn(T, B, 4 * H, generator=gen, dtype=dtype)  # input part of the pre-activations, gates i, f, g, o
    weight_hh = torch.randn(4 * H, H, generator=gen, dtype=dtype)
    h0, c0 = torch.randn(2, B, H, generator=gen, dtype=dtype)
    acts = gx.new_empty(T, B, 4 * H)
    hs, cs, tcs = gx.new_empty(T, B, H), gx.new_empty(T + 1, B, H), gx.new_empty(T, B, H)
    cs[0] = c0
    # No norm, peepholes or mask: those pointers stay null, as fused._lstm_kernel_forward leaves them.
    args = cpu.LSTMArgs(T=T, B=B, H=H, eps=1e-5, **{k: cpu.pointer(v) for k, v in dict(
        gx=gx, acts=acts, h0=h0, hs=hs, cs=cs, tcs=tcs).items()})
    step = getattr(lib, "lstm_forward_" + cpu.suffix(dtype))
    h_tm1 = h0
    for t in range(T):
        acts[t] = gx[t] + h_tm1 @ weight_hh.T  # (B, 4H) pre-activations, activated in place by the kernel
        step(ctypes.byref(args), t)
        h_tm1 = hs[t]

    h, c = h0, c0
    for t in range(T):
        i, f, g, o = (gx[t] + h @ weight_hh.T).chunk(4, dim=1)  # (B, H) each
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c = f * c + i * g
        h = o * torch.tanh(c)
        torch.testing.assert_close(acts[t], torch.cat([i, f, g, o], dim=1), rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(cs[t + 1], c, rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(tcs[t], torch.tanh(c), rtol=tolerance, atol=tolerance)
        torch.testing.assert_close(hs[t], h, rtol=tolerance, atol=tolerance)


@needs_compiler
def test_a_compiler_without_openmp_builds_the_kernels_without_it(tmp_path, monkeypatch, caplog):
    """The OpenMP build fails (here: a flag no compiler knows stands for -fopenmp): the library is
    built without it, its step kernels on one thread, and cached under its own key."""
    monkeypatch.setattr(cpu, "_FLAGS", cpu._FLAGS + ["-fno-such-openmp-flag"])
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cpu, "_library", None)
    with caplog.at_level(logging.INFO, logger=cpu.__name__):
        lib = cpu.load()
    assert lib and "with OpenMP failed" in caplog.text
    key = cpu._cache_key(cpu._sources(), cpu._compiler(), cpu._SERIAL_FLAGS)
    assert [p.name for p in tmp_path.glob("fused_kernels_*.so")] == [f"fused_kernels_{key}.so"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
