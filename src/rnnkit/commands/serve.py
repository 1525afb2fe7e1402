"""``rnnkit serve RUN [RUN ...] [--host H] [--port P]``: trained runs over HTTP, with a web page.

Each run is served under its directory's name: ``GET /v1/models``, ``POST
/v1/models/NAME/predict`` (as ``rnnkit predict``), ``POST /v1/models/NAME/generate`` (as
``rnnkit generate``; server-sent events with ``"stream": true``), ``WS /v1/models/NAME/stream``
(live forecasting), the OpenAPI docs at ``/docs`` and a page to try every model at ``/``.
The flags fill ``rnnkit.serve.ServeConfig``; the work is ``rnnkit.serve``'s.
"""
from __future__ import annotations

import argparse
import dataclasses

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..serve.config import ServeConfig  # (no torch, no FastAPI: `rnnkit --help` stays fast)

    d = ServeConfig()
    parser.add_argument("run_dirs", metavar="RUN", nargs="+", help="run directories (from rnnkit train); each is "
                                                                  "served under its directory's name")
    parser.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}; 0.0.0.0: every "
                                                       "interface)")
    parser.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    parser.add_argument("--device", default=d.device, help="where the models run: cpu | auto | cuda | cuda:N "
                                                           f"(default {d.device})")
    parser.add_argument("--no-batching", dest="batching", action="store_false",
                        help="run each predict request on its own (default: concurrent requests are micro-batched)")
    parser.add_argument("--max-batch", type=int, default=d.max_batch,
                        help=f"inputs per micro-batched predict call (default {d.max_batch})")
    parser.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                        help=f"how long a request waits for others to batch with (default {d.batch_wait_ms})")
    for name, about in (("max_body_bytes", "bytes of a JSON request body"),
                        ("max_upload_bytes", "bytes of a multipart upload, all files together"),
                        ("max_inputs", "inputs (or files) per request"),
                        ("max_history", "values of one forecast history"),
                        ("max_string_length", "characters of one input text or prime"),
                        ("max_steps", "generate's length and forecast's horizon")):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name),
                            help=f"the most {about} (default {getattr(d, name):,}); more is answered 413")


def run(args) -> int:
    try:
        from ..serve import ServeConfig, create_app, load_models
        import uvicorn
    except ModuleNotFoundError as e:
        raise ValueError(f"serve: {e.name} is not installed (pip install 'rnnkit[serve]')") from None
    from ..training.device import check_device

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)}
    values["device"] = check_device("serve", "--device", values["device"])
    config = ServeConfig(**values)
    models = load_models(args.run_dirs, config.device)
    app = create_app(models, config)
    print(f"rnnkit serve: {', '.join(f'{m.name} ({m.task.name})' for m in models.values())} "
          f"at http://{config.host}:{config.port}/ (API docs: /docs)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", ws_max_size=config.max_body_bytes,
                timeout_graceful_shutdown=5)
    return 0
