"""Pictures of training and of what recurrent networks do inside."""
from .plots import plot_curves

__all__ = ["plot_curves"]
