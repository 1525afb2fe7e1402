"""Compute kernels the engine's backends run on.

- ``gemm``: matrix products (oneDNN for float32 on CPU, torch.mm elsewhere) and ``linear``;
- ``lstm_bptt``, ``gru_bptt`` (with ``common``): whole-sequence BPTT Functions with a
  hand-written backward, on torch operations or on the compiled kernels;
- ``gate_norm``: per-gate layer norm on the compiled kernels;
- ``cpu``: the compiled C++ element-wise kernels (sources in ``csrc/``), built at first use.

Nothing here chooses when it runs: ``rnnkit.layers.sequence`` registers the backends that use
these, with what each supports (``rnnkit.layers.backends``).
"""

__all__: list[str] = []
