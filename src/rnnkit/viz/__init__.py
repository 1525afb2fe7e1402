"""Pictures of training and of what recurrent networks do inside."""
from .gradients import compare_cells, gradient_flow, plot_gradient_flow
from .inspect import inspect_text, record, write_html, write_pngs
from .plots import plot_curves

__all__ = ["plot_curves", "record", "inspect_text", "write_html", "write_pngs",
           "gradient_flow", "plot_gradient_flow", "compare_cells"]
