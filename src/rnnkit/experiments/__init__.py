"""Experiments: many training runs compared in one table and one plot (``rnnkit experiment``)."""
