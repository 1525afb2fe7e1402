"""rnnkit serve's JSON API against a real uvicorn process: each endpoint mirrors `rnnkit predict` /
`rnnkit generate`, bad requests are 4xx JSON naming the field, limits answer 413, only the
configured runs are reachable, and micro-batching changes nothing but the speed."""
from __future__ import annotations

import concurrent.futures
import http.client
import json
import shutil

import numpy as np
import pytest
import torch

import rnnkit
from conftest import Server, httpx, series

LIMITS = ["--max-body-bytes", "20000", "--max-upload-bytes", "60000", "--max-inputs", "16",
          "--max-string-length", "500", "--max-steps", "300", "--batch-wait-ms", "20"]


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    served = Server([runs[n] for n in ("digits", "sentiment", "charlm", "forecast")], *LIMITS,
                    cwd=tmp_path_factory.mktemp("api"))
    yield served
    served.stop()


def _strict(text: str):
    """JSON as the server must write it: no NaN / Infinity."""
    def refuse(name):
        raise AssertionError(f"the server wrote {name}, which is not JSON")
    return json.loads(text, parse_constant=refuse)


def _post(server, path, body=None, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kwargs) if body is not None or not kwargs \
        else httpx.post(server.url + path, timeout=60, **kwargs)


def _raw(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A request whose path is sent byte for byte (no client-side normalisation of %2F or ..)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


# -- success ---------------------------------------------------------------------------------

def test_models_are_listed_by_run_directory_name(server):
    r = httpx.get(server.url + "/v1/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in _strict(r.text)["models"]}
    assert {n: m["task"] for n, m in models.items()} == {
        "digits": "digits", "sentiment": "sentiment", "charlm": "charlm", "forecast": "forecast"}
    assert models["charlm"]["generate"] and not models["charlm"]["predict"]
    assert models["forecast"]["stream"] and models["forecast"]["horizon"] == 3
    assert ".png" in models["digits"]["uploads"] and models["sentiment"]["uploads"] == []
    assert httpx.get(server.url + "/openapi.json").json()["paths"]["/v1/models/{name}/predict"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_predict_gives_what_rnnkit_predict_prints(server, runs):
    texts = ["the box was yummy", "yuck it is", ""]
    r = _post(server, "/v1/models/sentiment/predict", {"inputs": texts})
    assert r.status_code == 200, r.text
    assert _strict(r.text) == {"outputs": rnnkit.load(runs["sentiment"]).predict(texts)}
    r = _post(server, "/v1/models/digits/predict", {"inputs": ["3", 17]})
    assert r.status_code == 200, r.text
    assert _strict(r.text)["outputs"] == rnnkit.load(runs["digits"]).predict(["3", "17"])


def test_forecast_predict_takes_numbers_and_the_horizon(server, runs):
    history = [float(v) for v in series()[-30:]]
    r = _post(server, "/v1/models/forecast/predict", {"inputs": history, "horizon": 5})
    assert r.status_code == 200, r.text
    expected = rnnkit.load(runs["forecast"]).predict([repr(v) for v in history], horizon=5)
    assert _strict(r.text)["outputs"] == expected
    r = _post(server, "/v1/models/forecast/predict", {})  # no history: after the training series
    assert r.status_code == 200 and len(r.json()["outputs"][0]["forecast"]) == 3


def test_image_upload_is_predicted_and_deleted(server, runs, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[7] * 255 / 16).astype(np.uint8)  # (8, 8)
    Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(tmp_path / "seven.png")
    data = (tmp_path / "seven.png").read_bytes()
    r = httpx.post(server.url + "/v1/models/digits/predict", timeout=60,
                   files=[("files", ("../../etc/seven.png", data, "image/png")), ("files", ("b.png", data, "image/png"))])
    assert r.status_code == 200, r.text
    rows = _strict(r.text)["outputs"]
    local = rnnkit.load(runs["digits"]).predict([str(tmp_path / "seven.png")])[0]
    assert [row["input"] for row in rows] == ["seven.png", "b.png"]  # the client's name without folders
    assert [row["label"] for row in rows] == [local["label"]] * 2
    upload_dirs = list(server.tmp.glob("rnnkit-serve-*"))
    assert len(upload_dirs) == 1 and list(upload_dirs[0].iterdir()) == []  # the private files are gone
    assert oct(upload_dirs[0].stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("files, field, status", [
    ([("files", ("x.txt", b"hello", "text/plain"))], "files[0]", 422),
    ([("files", ("x.png", b"", "image/png"))], "files[0]", 422),
    ([("files", ("x.png", b"not an image", "image/png"))], "inputs", 422),
    ([("files", ("big.png", b"0" * 70000, "image/png"))], "body", 413),
    ([("files", (f"{k}.png", b"0", "image/png")) for k in range(17)], "files", 413),
])
def test_bad_uploads_are_4xx_naming_the_field(server, files, field, status):
    r = httpx.post(server.url + "/v1/models/digits/predict", files=files, timeout=60)
    assert (r.status_code, r.json()["field"]) == (status, field), r.text
    assert list(next(server.tmp.glob("rnnkit-serve-*")).iterdir()) == []


def test_uploads_to_a_text_model_are_refused(server):
    r = httpx.post(server.url + "/v1/models/sentiment/predict", files=[("files", ("a.png", b"x", "image/png"))])
    assert (r.status_code, r.json()["field"]) == (422, "files")


def test_generate_is_seeded_and_mirrors_rnnkit_generate(server, runs):
    body = {"prime": "the ", "length": 40, "temperature": 0.8, "top_k": 5, "seed": 3}
    first, again = (_post(server, "/v1/models/charlm/generate", body) for _ in range(2))
    assert first.status_code == 200, first.text
    assert _strict(first.text) == _strict(again.text) == {"text": first.json()["text"], "seed": 3}
    run = rnnkit.load(runs["charlm"])
    torch.manual_seed(3)
    assert first.json()["text"] == run.generate("the ", 40, 0.8, 5)
    unseeded = _post(server, "/v1/models/charlm/generate", {"length": 10}).json()
    assert isinstance(unseeded["seed"], int) and len(unseeded["text"]) >= 1  # the seed it drew, to repeat it


def test_generate_streams_server_sent_events_piece_by_piece(server):
    body = {"prime": "my ", "length": 25, "seed": 5}
    whole = _post(server, "/v1/models/charlm/generate", body).json()["text"]
    events = []
    with httpx.stream("POST", server.url + "/v1/models/charlm/generate", json={**body, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for block in r.iter_text():
            events.append(block)
    text = "".join(events)
    messages = [chunk for chunk in text.split("\n\n") if chunk.strip()]
    pieces = [_strict(m.removeprefix("data: "))["text"] for m in messages if m.startswith("data: ")]
    done = [m for m in messages if m.startswith("event: done")]
    assert len(pieces) == 26 and pieces[0] == "my "  # the prime, then one event per character
    assert "".join(pieces) == whole
    assert len(done) == 1 and _strict(done[0].split("data: ", 1)[1]) == {"text": whole, "seed": 5}


def test_websocket_steps_equal_the_whole_sequence_forecast(server, runs):
    from websockets.sync.client import connect

    values = [float(v) for v in series()[-13:]]  # window 12 + lag 1: the first forecast that equals predict's
    with connect(server.url.replace("http", "ws") + "/v1/models/forecast/stream") as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello["horizon"] == 3
        rows = []
        for v in values:
            ws.send(json.dumps({"value": v}))
            rows.append(json.loads(ws.recv(timeout=30)))
        ws.send(json.dumps({"value": "x"}))
        error = json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"reset": True}))
        reset = json.loads(ws.recv(timeout=30))
        ws.send(json.dumps({"values": values[:2]}))
        again = [json.loads(ws.recv(timeout=30)) for _ in range(2)]
    assert [r["step"] for r in rows] == list(range(1, 14))
    assert rows[0]["forecast"] is None and all(r["forecast"] is not None for r in rows[1:])  # lag 1 warms up
    whole = rnnkit.load(runs["forecast"]).predict([repr(v) for v in values])[0]["forecast"]
    np.testing.assert_allclose(rows[-1]["forecast"], whole, rtol=1e-4)
    assert error["field"] == "value" and "finite number" in error["error"]
    assert reset == {"reset": True, "step": 0}
    assert [r["step"] for r in again] == [1, 2] and again[1]["forecast"] == rows[1]["forecast"]


def test_websocket_of_a_model_without_live_mode_or_another_site_is_refused(server):
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    base = server.url.replace("http", "ws")
    for name in ("sentiment", "nosuch"):
        with connect(f"{base}/v1/models/{name}/stream") as ws:
            assert json.loads(ws.recv(timeout=30))["field"] == "name"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=30)
            assert closed.value.rcvd.code == 4404
    with pytest.raises(InvalidStatus):
        connect(f"{base}/v1/models/forecast/stream", origin="http://evil.example").close()


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, field", [
    ("sentiment", {}, "inputs"),
    ("sentiment", {"inputs": "yummy"}, "inputs"),
    ("sentiment", {"inputs": []}, "inputs"),
    ("sentiment", {"inputs": ["ok", 3]}, "inputs[1]"),
    ("sentiment", {"inputs": ["ok"], "bogus": 1}, "bogus"),
    ("sentiment", ["ok"], "body"),
    ("digits", {"inputs": ["/etc/passwd"]}, "inputs[0]"),
    ("digits", {"inputs": ["٣"]}, "inputs[0]"),
    ("digits", {"inputs": [-1]}, "inputs[0]"),
    ("digits", {"inputs": ["99999"]}, "inputs"),  # the task's own check: index out of range
    ("forecast", {"inputs": [1.0, "abc"]}, "inputs[1]"),
    ("forecast", {"inputs": [1.0, 2.0]}, "inputs"),  # too short a history, the task says
    ("forecast", {"horizon": 0}, "horizon"),
    ("forecast", {"horizon": "3"}, "horizon"),
    ("forecast", {"horizon": True}, "horizon"),
])
def test_bad_predict_input_is_422_naming_the_field(server, path, body, field):
    r = _post(server, f"/v1/models/{path}/predict", body)
    assert r.status_code == 422, r.text
    assert _strict(r.text)["field"] == field and r.json()["error"]


@pytest.mark.parametrize("body, field", [
    ({"length": 0}, "length"),
    ({"length": "ten"}, "length"),
    ({"temperature": 0}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"stream": "yes"}, "stream"),
    ({"prime": 5}, "prime"),
    ({"horizon": 3}, "horizon"),
])
def test_bad_generate_input_is_422_naming_the_field(server, body, field):
    r = _post(server, "/v1/models/charlm/generate", body)
    assert (r.status_code, _strict(r.text)["field"]) == (422, field), r.text


def test_bodies_that_are_not_json_objects(server):
    status, data = _raw(server, "POST", "/v1/models/sentiment/predict", b'{"inputs": [NaN]}')
    assert (status, json.loads(data)["field"]) == (422, "body")
    status, data = _raw(server, "POST", "/v1/models/sentiment/predict", b"[" * 5000 + b"]" * 5000)
    assert (status, json.loads(data)["field"]) == (422, "body")
    status, data = _raw(server, "POST", "/v1/models/sentiment/predict", b'{"inputs": ["a"]}',
                        {"content-type": "text/plain"})
    assert (status, json.loads(data)["field"]) == (415, "content-type")


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/models/nosuch/predict"), ("POST", "/v1/models/nosuch/generate"), ("GET", "/v1/models/nosuch"),
    ("POST", "/v1/models/sentiment/generate"), ("POST", "/v1/models/charlm/predict"),
])
def test_unknown_model_or_endpoint_is_404(server, method, path):
    r = httpx.request(method, server.url + path, json={"inputs": ["a"]})
    assert r.status_code == 404 and r.json()["error"], r.text


@pytest.mark.parametrize("path", [
    "/v1/models/..%2F..%2Fetc/predict", "/v1/models/..%2Foutside/predict", "/v1/models/%2e%2e/predict",
    "/v1/models/../outside/predict", "/v1/models/%2Fetc%2Fpasswd/predict", "/v1/models/outside/predict",
    "/v1/models/..%5Coutside/predict", "/v1/models/.%2Foutside/predict", "/v1/models/%252e%252e%252foutside/predict",
])
def test_traversal_attempts_reach_no_file(server, runs, path):
    outside = server.log.parent / "outside"  # a real run directory beside the server's: never served
    if not outside.exists():
        shutil.copytree(runs["digits"], outside)
    files = [p for p in outside.rglob("*") if p.is_file()]
    before = [p.stat().st_atime_ns for p in files]  # (a read of a file copied just now updates its atime)
    status, data = _raw(server, "POST", path, b'{"inputs": ["1"]}')
    assert status == 404, data
    assert json.loads(data)["error"]
    assert [p.stat().st_atime_ns for p in files] == before  # not one file read


def test_limits_answer_413_naming_the_field(server):
    cases = [
        ({"inputs": ["a"] * 17}, "inputs", "sentiment/predict"),
        ({"inputs": ["a" * 501]}, "inputs[0]", "sentiment/predict"),
        ({"inputs": ["a"], "pad": "a" * 20000}, "body", "sentiment/predict"),  # > 20,000 bytes: never parsed
        ({"horizon": 301}, "horizon", "forecast/predict"),
        ({"length": 301}, "length", "charlm/generate"),
        ({"prime": "a" * 501}, "prime", "charlm/generate"),
    ]
    for body, field, path in cases:
        r = _post(server, f"/v1/models/{path}", body)
        assert (r.status_code, _strict(r.text)["field"]) == (413, field), (body, r.text)


def test_a_chunked_body_over_the_limit_is_413(server):
    def chunks():
        yield b'{"inputs": ["'
        for _ in range(30):
            yield b"a" * 1000
        yield b'"]}'
    r = httpx.post(server.url + "/v1/models/sentiment/predict", content=chunks(),
                   headers={"content-type": "application/json"}, timeout=60)
    assert (r.status_code, r.json()["field"]) == (413, "body")


# -- micro-batching --------------------------------------------------------------------------

def test_concurrent_requests_are_batched_and_get_the_outputs_one_by_one_gets(server):
    texts = [f"{w} yummy box {k}" if k % 2 else f"yuck {w} order" for k, w in enumerate(["a", "the", "my", "it"] * 6)]
    requests = [texts[k:k + 1 + k % 2] for k in range(0, len(texts), 2)]  # 12 requests of 1 or 2 texts
    alone = [_post(server, "/v1/models/sentiment/predict", {"inputs": r}).json()["outputs"] for r in requests]
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda r: _post(server, "/v1/models/sentiment/predict", {"inputs": r}), requests))
    assert all(r.status_code == 200 for r in together)
    assert max(int(r.headers["x-rnnkit-batch"]) for r in together) > 2  # several requests in one predict call
    for one, both in zip(alone, together):
        rows = both.json()["outputs"]
        assert [r["input"] for r in rows] == [r["input"] for r in one]
        assert [r["label"] for r in rows] == [r["label"] for r in one]
        for a, b in zip(one, rows):
            assert b["probabilities"] == pytest.approx(a["probabilities"], abs=2e-4)


def test_a_bad_request_in_a_batch_fails_alone(server):
    bodies = [{"inputs": ["5"]}, {"inputs": ["99999"]}, {"inputs": ["6", "7"]}, {"inputs": ["8"]}] * 3
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: _post(server, "/v1/models/digits/predict", b), bodies))
    for body, r in zip(bodies, answers):
        if body["inputs"] == ["99999"]:
            assert (r.status_code, r.json()["field"]) == (422, "inputs")
        else:
            assert r.status_code == 200 and [o["input"] for o in r.json()["outputs"]] == body["inputs"]
