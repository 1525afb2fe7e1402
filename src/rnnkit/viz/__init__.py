"""Pictures of training and of what recurrent networks do inside."""
from .gradients import gradient_flow, gradients_png, plot_gradient_flow
from .heatmaps import write_pngs
from .plots import plot_curves
from .recording import record
from .report import write_html
from .text import inspect_text

__all__ = ["plot_curves", "record", "inspect_text", "write_html", "write_pngs",
           "gradient_flow", "plot_gradient_flow", "gradients_png"]
