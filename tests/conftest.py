"""Shared test setup.

Tests run on one intra-op thread: the tensors here are tiny, and on a 2-core machine that is
busy with anything else, torch's OpenMP threads wait for a core on every parallel op.
"""
import torch

torch.set_num_threads(1)
