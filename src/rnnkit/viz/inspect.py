"""Look inside a trained recurrent network: per-step gates and states, and a report to read them.

One import for the inspector (``rnnkit inspect`` uses it), over one module per concern:

- ``rnnkit.viz.recording``: ``record(model)`` records every gate of every rnnkit recurrent layer
  by rerunning the cells' reference steps (``LayerRecord``, ``Recording``, ``GATES``);
- ``rnnkit.viz.text``: ``inspect_text`` reads a text with a character language model under
  ``record`` (an ``Inspection``); ``text_features`` and ``unit_correlations`` say which units
  follow what;
- ``rnnkit.viz.report``: ``write_html``, the self-contained HTML report, from the template
  ``templates/report.html``;
- ``rnnkit.viz.heatmaps``: ``write_pngs``, the same heatmaps as PNG files;
- ``rnnkit.viz.gradients``: ``gradients_png``, the gradient-flow plot to embed in the report.
"""
from .gradients import gradients_png
from .heatmaps import write_pngs
from .recording import GATES, LayerRecord, Recording, record
from .report import write_html
from .text import FEATURES, Inspection, inspect_text, text_features, unit_correlations

__all__ = [
    "record", "Recording", "LayerRecord", "GATES",
    "Inspection", "inspect_text", "FEATURES", "text_features", "unit_correlations", "write_html", "write_pngs",
    "gradients_png",
]
