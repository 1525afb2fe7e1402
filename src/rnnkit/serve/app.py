"""The HTTP API (FastAPI): the routes, their errors, and the page at ``/``.

    GET  /                              the web page (one panel per model)
    GET  /v1/models                     {"models": [{"name", "task", ...}]}
    GET  /v1/models/{name}              one model's entry
    POST /v1/models/{name}/predict      {"inputs": [...], <predict options>} -> {"outputs": [...]}
                                        or multipart/form-data files (images, audio) -> the same
    POST /v1/models/{name}/generate     {"prime", "length", "temperature", "top_k", "seed", "stream"}
                                        -> {"text", "seed"}, or server-sent events when stream is true
    WS   /v1/models/{name}/stream       live forecasting, one observation per message

Models are looked up by name in a dict built at start-up: nothing from a request reaches the
file system. Every error is JSON, ``{"error": message, "field": name}``: 404 for a model that
is not served, 413 for a request over a limit, 415 for a body that is not JSON, 422 for bad
input (the task's own errors included), 500 for an output that is not finite.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..checks import nonfinite_places
from ..viz.report import render_template
from .batching import Batched, MicroBatcher, run_predict
from .config import ServeConfig
from .limits import BodyLimitMiddleware, BodyTooLarge
from .models import ServedModel
from .requests import RequestError, parse_generate, parse_options, parse_predict
from .streams import forecast_session, generate_pieces, generate_text, new_seed, sse_event
from .uploads import save_upload

__all__ = ["create_app", "finite_json", "page_html"]

log = logging.getLogger(__name__)

_PREDICT_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
        "inputs": {"type": "array", "items": {"type": ["string", "number"]},
                   "description": "what to predict on, as `rnnkit predict RUN INPUT...` takes it"}},
        "additionalProperties": True, "description": "plus the task's predict options (forecast: horizon)"},
        "example": {"inputs": ["what a great product"]}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        "description": "image or audio files, for the tasks whose predict reads files (digits, mnist, speech)"}}}}}
_GENERATE_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "properties": {
        "prime": {"type": "string"}, "length": {"type": "integer"}, "temperature": {"type": "number"},
        "top_k": {"type": "integer"}, "seed": {"type": ["integer", "null"]},
        "stream": {"type": "boolean", "description": "server-sent events, one per piece, then `event: done`"}}},
    "example": {"prime": "the ", "length": 100, "temperature": 0.8, "seed": 1, "stream": False}}}}}


def finite_json(obj: Any) -> bytes:
    """``obj`` as strict JSON (no NaN or Infinity); a non-finite number is a RequestError (500) naming where."""
    bad = next(nonfinite_places(obj), None)
    if bad is not None:
        raise RequestError(500, bad, f"the model's output is not finite (NaN or inf) at {bad}")
    return json.dumps(obj, allow_nan=False).encode()


def page_html(models: dict[str, ServedModel]) -> str:
    """The web page (``templates/index.html``) with the models' entries inlined as JSON."""
    template = resources.files(__package__).joinpath("templates", "index.html").read_text(encoding="utf-8")
    data = json.dumps([m.describe() for m in models.values()], allow_nan=False)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert inside <script>
    return render_template(template, {"MODELS": data})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def create_app(models: dict[str, ServedModel], config: ServeConfig) -> FastAPI:
    """The application serving ``models`` (from ``load_models``) under ``config``'s limits."""
    state: dict[str, Any] = {"batchers": {}, "uploads": None}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state["uploads"] = Path(tempfile.mkdtemp(prefix="rnnkit-serve-"))  # mode 0700
        if config.batching:
            for model in models.values():
                if model.predicts and model.inputs.per_input:
                    batcher = MicroBatcher(model, config.max_batch, config.batch_wait_ms / 1000)
                    batcher.start()
                    state["batchers"][model.name] = batcher
        try:
            yield
        finally:
            for batcher in state["batchers"].values():
                await batcher.stop()
            shutil.rmtree(state["uploads"], ignore_errors=True)

    app = FastAPI(title="rnnkit serve", version="1", lifespan=lifespan,
                  description="Trained rnnkit runs over HTTP: predict, generate (SSE), live forecasting (websocket).")
    app.state.serve = state
    app.add_middleware(BodyLimitMiddleware, json_limit=config.max_body_bytes, upload_limit=config.max_upload_bytes)
    page = page_html(models)

    @app.exception_handler(RequestError)
    async def request_error(request, e: RequestError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, e: BodyTooLarge):
        return JSONResponse({"error": str(e), "field": "body"}, status_code=413)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        return JSONResponse({"error": str(e.detail), "field": None}, status_code=e.status_code, headers=e.headers)

    def model_named(name: str, needs: str | None = None) -> ServedModel:
        model = models.get(name)  # the only way from a request to a model: a dict of the configured runs
        if model is None:
            raise RequestError(404, "name", f"no model named {name[:100]!r}; GET /v1/models lists them")
        if needs is not None and not getattr(model, needs):
            verb = {"predicts": "predict", "generates": "generate text", "streams": "stream"}[needs]
            raise RequestError(404, "name", f"model {name!r} (task {model.task.name}) does not {verb}")
        return model

    async def predict_rows(model: ServedModel, inputs: tuple[str, ...], options: tuple) -> Batched:
        batcher = state["batchers"].get(model.name)
        try:
            if batcher is not None:
                return await batcher.predict(inputs, options)
            return Batched(await run_predict(model, list(inputs), dict(options)), len(inputs))
        except (ValueError, TypeError) as e:  # the task's own checks: bad input
            raise RequestError(422, "inputs", str(e).splitlines()[0] if str(e) else type(e).__name__) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": (
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
            "media-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")})

    @app.get("/v1/models", summary="the models served")
    async def list_models():
        return {"models": [m.describe() for m in models.values()]}

    @app.get("/v1/models/{name}", summary="one model")
    async def describe(name: str):
        return model_named(name).describe()

    @app.post("/v1/models/{name}/predict", summary="predict, as `rnnkit predict RUN INPUT...`",
              openapi_extra=_PREDICT_DOC)
    async def predict(name: str, request: Request):
        model = model_named(name, "predicts")
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return await predict_uploads(model, request)
        body = await json_body(request)
        req = parse_predict(body, model.inputs, model.task.PredictOptions, config)
        done = await predict_rows(model, req.inputs, req.options)
        return _outputs(done.rows, done.batch_inputs)

    async def predict_uploads(model: ServedModel, request: Request) -> Response:
        if not model.inputs.files:
            raise RequestError(422, "files", f"model {model.name!r} (task {model.task.name}) takes no file uploads; "
                                             "send JSON")
        try:
            form = await request.form(max_files=config.max_inputs, max_fields=32)
        except HTTPException as e:  # malformed multipart, too many files or fields
            status = 413 if "Too many" in str(e.detail) else 422
            raise RequestError(status, "files", f"multipart/form-data: {e.detail}") from None
        saved = []
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
            if not files:
                raise RequestError(422, "files", "no file in the multipart/form-data body")
            options = parse_options(model.task.PredictOptions, _typed_form(model.task.PredictOptions, fields),
                                    config, "predict")
            for k, upload in enumerate(files):
                saved.append(await save_upload(upload, k, model.inputs, state["uploads"], config))
            done = await predict_rows(model, tuple(s.path for s in saved), tuple(sorted(options.items())))
            by_path = {s.path: s.name for s in saved}  # the private paths never leave the server
            rows = [{**row, "input": by_path[row["input"]]} if row.get("input") in by_path else row
                    for row in done.rows]
            return _outputs(rows, done.batch_inputs)
        finally:
            for s in saved:
                s.delete()
            await form.close()

    @app.post("/v1/models/{name}/generate", summary="sample text, as `rnnkit generate RUN`", openapi_extra=_GENERATE_DOC)
    async def generate(name: str, request: Request):
        model = model_named(name, "generates")
        req = parse_generate(await json_body(request), model.task.GenerateOptions, config)
        try:
            model.task.GenerateOptions(**req.options)  # the fields together, before anything is sent
        except (TypeError, ValueError) as e:
            raise RequestError(422, next(iter(req.options), "body"), str(e).splitlines()[0]) from None
        seed = new_seed() if req.seed is None else req.seed
        if not req.stream:
            try:
                text = await generate_text(model, req.options, seed)
            except (ValueError, TypeError) as e:  # the task's own checks
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise RequestError(422, "prime" if "prime" in message else "body", message) from None
            return Response(finite_json({"text": text, "seed": seed}), media_type="application/json")

        async def events():
            pieces = []
            try:
                async for piece in generate_pieces(model, req.options, seed):
                    pieces.append(piece)
                    yield sse_event({"text": piece})
                yield sse_event({"text": "".join(pieces), "seed": seed}, "done")
            except Exception as e:  # the status is sent already: the error is an event
                log.warning("%s: generate failed: %s", model.name, e)
                yield sse_event({"error": str(e).splitlines()[0] if str(e) else type(e).__name__, "field": None},
                                "error")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.websocket("/v1/models/{name}/stream")
    async def stream(websocket: WebSocket, name: str):
        origin, host = websocket.headers.get("origin"), websocket.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            await websocket.close(code=1008)  # another site's page: refused before the handshake
            return
        await websocket.accept()
        try:
            model = model_named(name, "streams")
        except RequestError as e:
            await websocket.send_json(e.body())
            await websocket.close(code=4404)
            return
        await forecast_session(websocket, model, config)

    async def json_body(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(415, "content-type", f"the body must be application/json, got {kind or 'nothing'!r}")
        raw = await request.body()
        try:
            return json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise RequestError(422, "body", f"the body is not valid JSON ({str(e)[:100]})") from None

    return app


def _outputs(rows: list[dict], batch_inputs: int) -> Response:
    """``{"outputs": rows}``; the header X-Rnnkit-Batch says how many inputs the predict call held."""
    return Response(finite_json({"outputs": rows}), media_type="application/json",
                    headers={"X-Rnnkit-Batch": str(batch_inputs)})


def _typed_form(cls, fields: dict[str, str]) -> dict[str, Any]:
    """Form fields (strings) typed as the fields of dataclass ``cls`` ("3" -> 3 for an int)."""
    import dataclasses

    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for name, text in fields.items():
        kind = kinds.get(name, "str")
        try:
            if kind.startswith("int"):
                out[name] = int(text)
            elif kind.startswith("float"):
                out[name] = float(text)
            elif kind.startswith("bool"):
                out[name] = {"true": True, "false": False}[text.lower()]
            else:
                out[name] = text
        except (ValueError, KeyError):
            raise RequestError(422, name, f"{name} must be {kind.split('|')[0].strip()}, got {text[:40]!r}") from None
    return out

