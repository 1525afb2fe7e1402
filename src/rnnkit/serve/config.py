"""The server's settings: one typed dataclass, filled by ``rnnkit serve``'s flags."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """What ``rnnkit serve`` listens on and what one request may ask for.

    Every limit is checked before any inference runs; a request over one is answered 413
    with JSON naming the field (``{"error": ..., "field": "inputs"}``).
    """

    host: str = "127.0.0.1"  # listen address; 0.0.0.0 for every interface
    port: int = 8000
    device: str = "cpu"  # where the models run: cpu | auto | cuda | cuda:N
    batching: bool = True  # concatenate concurrent predict requests into one call (micro-batching)
    max_batch: int = 32  # inputs per batched predict call
    batch_wait_ms: float = 2.0  # how long the first request of a batch waits for others to join it
    max_body_bytes: int = 1_000_000  # a JSON request body
    max_upload_bytes: int = 10_000_000  # a multipart (file upload) request body, all files together
    max_inputs: int = 64  # inputs (or uploaded files, or streamed values) in one request / message
    max_history: int = 10_000  # values of one history (forecast: its inputs are one series, not many inputs)
    max_string_length: int = 5_000  # characters of one input text, and of generate's prime
    max_steps: int = 2_000  # steps one request may ask for: generate's length, forecast's horizon

    def __post_init__(self) -> None:
        owner = "ServeConfig"
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ValueError(f"{owner}: port must be an int in [0, 65535], got {self.port!r}")
        for name in ("max_batch", "max_body_bytes", "max_upload_bytes", "max_inputs", "max_history", "max_string_length", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.batch_wait_ms <= 1000.0:  # (NaN too)
            raise ValueError(f"{owner}: batch_wait_ms must be in [0, 1000], got {self.batch_wait_ms!r}")
