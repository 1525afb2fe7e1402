"""Compute kernels the engine's backends run on.

- ``gemm``: matrix products (oneDNN for float32 on CPU, torch.mm elsewhere) and ``linear``;
- ``lstm_bptt``, ``gru_bptt`` (with ``common``): whole-sequence BPTT Functions with a
  hand-written backward, on torch operations or on the compiled kernels;
- ``gate_norm``: per-gate layer norm on the compiled kernels;
- ``cpu``: the compiled C++ element-wise kernels (sources in ``csrc/``), built at first use,
  called through ctypes inside torch custom operators (``rnnkit::lstm_sequence_forward`` and
  the others of ``lstm_bptt``, ``gru_bptt`` and ``gate_norm``), which ``torch.compile`` traces.

Nothing here chooses when it runs: ``rnnkit.layers.sequence`` registers the backends that use
these, with what each supports (``rnnkit.layers.backends``).
"""

__all__: list[str] = []
