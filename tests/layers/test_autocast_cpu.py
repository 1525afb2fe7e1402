"""torch's fused layers under CPU autocast to bfloat16 run on every CPU: where oneDNN has no
bfloat16 RNN kernels (no AVX-512, e.g. AVX2-only hosts) torch's own kernel raises, and the
"torch" backend computes the layer in float32 instead and hands back bfloat16."""
import pytest
import torch

import rnnkit
from rnnkit.layers import native


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_layers_run_under_cpu_bf16_autocast(cls, with_lengths):
    torch.manual_seed(0)
    layer = cls(8, 16, num_layers=2, bidirectional=True)
    x, lengths = torch.randn(5, 3, 8), (torch.tensor([5, 3, 2]) if with_lengths else None)
    ref, ref_state = layer(x, lengths=lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x, lengths=lengths)
    assert out.dtype == torch.bfloat16  # as autocast gives it, whichever kernel ran
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    for got, want in zip(state if isinstance(state, tuple) else (state,), ref_state if isinstance(ref_state, tuple)
                         else (ref_state,)):
        torch.testing.assert_close(got.float(), want, atol=5e-2, rtol=5e-2)


def test_the_check_is_true_only_under_cpu_bf16_autocast_without_bf16_kernels():
    x = torch.ones(2)
    assert not native._onednn_lacks_bf16(x)  # no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert native._onednn_lacks_bf16(x) == (not torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with torch.autocast("cpu", dtype=torch.float16):
        assert not native._onednn_lacks_bf16(x)
