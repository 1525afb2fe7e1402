"""Compute kernels the engine's backends run on: oneDNN products, the BPTT Functions and the compiled CPU element-wise kernels."""

__all__ = []
