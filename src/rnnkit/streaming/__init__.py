"""Live inference, one time step at a time: ``Stream`` steps a recurrent stack in O(1) memory
(``stream.py``), over step objects that are the "stream" backends of ``rnnkit.layers.backends``
or the cells' own reference step (``steps.py``); ``CTCStreamDecoder`` turns per-frame CTC
scores into text as the frames arrive (``ctc.py``)."""
from .ctc import CTCStreamDecoder
from .stream import Stream

__all__ = ["Stream", "CTCStreamDecoder"]
