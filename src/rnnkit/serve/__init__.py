"""``rnnkit serve``: trained runs over HTTP (FastAPI + uvicorn) and a web page to try them.

``load_models(run_dirs)`` loads each run (``rnnkit.load``) under its directory's name;
``create_app(models, ServeConfig(...))`` is the ASGI application (routes and errors:
``app.py``); micro-batching of concurrent predict requests is ``batching.py``; text
generation as server-sent events and live forecasting over a websocket are ``streams.py``;
request checks ``requests.py``; body limits ``limits.py``; uploads ``uploads.py``; the page
is the template ``templates/index.html``. Needs the ``serve`` extra: ``pip install rnnkit[serve]``.

>>> from rnnkit.serve import ServeConfig, create_app, load_models         # doctest: +SKIP
>>> app = create_app(load_models(["runs/sentiment"]), ServeConfig())       # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, port=8000)                            # doctest: +SKIP

The names below are imported on first use, so that ``rnnkit --help`` (which reads
``ServeConfig``'s defaults for its flags) neither needs FastAPI nor pays for importing it.
"""
from __future__ import annotations

import importlib

__all__ = ["ServeConfig", "create_app", "load_models", "ServedModel", "Inputs", "TASK_INPUTS", "inputs_of",
           "RequestError", "BodyLimitMiddleware", "BodyTooLarge", "finite_json", "page_html"]

_MODULE_OF = {"ServeConfig": "config", "create_app": "app", "finite_json": "app", "page_html": "app",
              "load_models": "models", "ServedModel": "models", "Inputs": "models", "TASK_INPUTS": "models",
              "inputs_of": "models", "RequestError": "requests", "BodyLimitMiddleware": "limits",
              "BodyTooLarge": "limits"}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
