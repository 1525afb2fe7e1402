"""The Triton step kernels (``rnnkit.kernels.triton_steps``, the "cuda-fused" sequence backend) on
a machine without a GPU: Triton's interpreter (``TRITON_INTERPRET=1``) runs them on CPU tensors.

The interpreter must be chosen before Triton compiles anything, so the comparisons run in a
child pytest over ``tests/layers/test_sequence_backends.py`` restricted to "cuda-fused" (with
the C++ kernels switched off, the step kernels there are Triton's), against the reference step
loop: outputs, final states and every gradient. On a GPU, ``tests/test_cuda.py`` and the grids
of ``tests/layers/test_backends.py`` run them compiled; and the kernels check themselves at
first use (``rnnkit.kernels.triton_steps``), the check also run here under the interpreter.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (pip install triton): its kernels run on CUDA only")

ROOT = Path(__file__).resolve().parents[2]
# A cross-section of the file's cases (all 402 take ~25 minutes under the interpreter): every
# variant in both directions, float64, with lengths and an initial state on two layers; and any
# mask pattern. ``TRITON_INTERPRET=1 pytest tests/layers/test_sequence_backends.py -k cuda-fused``
# runs them all (it is how the kernels were checked before any GPU ran them).
SELECTION = "cuda-fused and (lengths-True-2-dtype0 or any_mask_pattern)"


def test_triton_step_kernels_equal_the_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "-k", SELECTION,
         str(ROOT / "tests" / "layers" / "test_sequence_backends.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary


def test_the_first_use_check_passes_and_catches_a_wrong_kernel():
    """``_usable`` runs every kernel at every compile-time branch against torch operations: it
    passes for the real kernels, and fails (one warning, the kernels unused) for wrong ones."""
    script = """
import logging, os, sys
import torch
from rnnkit.kernels import cpu, triton_steps
cpu.set_enabled(False)
with torch.inference_mode():  # a first call in inference mode (or no_grad) still checks with gradients
    assert triton_steps.applies(torch.zeros(1, dtype=torch.float64)), "the real kernels fail their check"
triton_steps._checked.clear()
triton_steps._sigmoid = triton_steps._tanh  # every gate's activation wrong (the interpreter looks it up at run time)
assert not triton_steps.applies(torch.zeros(1)), "a wrong kernel passed the check"
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr[-3000:]
    assert "failed their first-use check" in result.stderr
