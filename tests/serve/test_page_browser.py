"""The page at / in a real headless Chromium, driven over the DevTools protocol (CDP): type a
sentence and see its label, start a generation and watch it stream, plot a forecast and feed
it live over the websocket, upload an image; the page's script raises no error."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from conftest import Server, httpx, series


def _chromium():
    for name in (os.environ.get("RNNKIT_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium; .ci/run installs it)")


class Browser:
    """Headless Chromium with one page, driven by CDP commands over its websocket."""

    def __init__(self, profile, *extra_flags: str) -> None:
        from websockets.sync.client import connect

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
                 f"--user-data-dir={profile}", "--window-size=1200,900", *extra_flags, "about:blank"]
        self.process = subprocess.Popen([CHROMIUM, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 120
        pages = []
        while not pages:  # the file holds the port, then the browser's path: complete once it has both lines
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) < 2:
                continue
            try:
                targets = httpx.get(f"http://127.0.0.1:{int(lines[0])}/json/list", timeout=10).json()
            except httpx.HTTPError:
                continue
            pages = [t for t in targets if t["type"] == "page"]
        self._closing = contextlib.ExitStack()
        self.ws = self._closing.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None))
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:  # e.g. while a navigation replaces the page's execution context
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}; errors: {self.eval('errors.textContent')!r}")

    def close(self) -> None:
        if getattr(self, "_closing", None) is not None:
            self._closing.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    served = Server([runs[n] for n in ("sentiment", "charlm", "forecast", "digits")],
                    cwd=tmp_path_factory.mktemp("page"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("chromium"))
    browser.call("Page.enable")
    browser.call("Page.navigate", url=server.url + "/")
    browser.wait_for("document.body && document.body.dataset.ready === '1'")
    yield browser
    assert browser.eval("errors.textContent") == ""  # the page's script raised no error
    browser.close()


def _panel(name: str) -> str:
    return f"document.querySelector('.panel[data-model=\"{name}\"]')"


def test_the_page_is_self_contained_with_one_panel_per_model(server, page):
    html = httpx.get(server.url + "/").text
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # an XML namespace, never fetched
    assert page.eval("[...document.querySelectorAll('.panel')].map(p => p.dataset.model)") == [
        "sentiment", "charlm", "forecast", "digits"]


def test_typing_a_sentence_shows_its_label(server, page):
    text = "my order was yummy today"
    page.eval(f"{_panel('sentiment')}.querySelector('.text-input').value = {json.dumps(text)}")
    page.eval(f"{_panel('sentiment')}.querySelector('.predict-button').click()")
    shown = page.wait_for(f"{_panel('sentiment')}.querySelector('.result .label')?.textContent")
    expected = httpx.post(server.url + "/v1/models/sentiment/predict", json={"inputs": [text]}).json()["outputs"][0]
    assert shown == expected["label"]
    assert page.eval(f"{_panel('sentiment')}.querySelectorAll('.result .bar').length") == 2


def test_generated_text_streams_into_the_page(server, page):
    p = _panel("charlm")
    page.eval(f"{p}.querySelector('.prime-input').value = 'the '; {p}.querySelector('.length-input').value = '120';"
              f"{p}.querySelector('.seed-input').value = '7'; {p}.querySelector('.generate-button').click()")
    page.wait_for(f"{p}.querySelector('.generated').dataset.done === '1'")
    events = int(page.eval(f"{p}.querySelector('.generated').dataset.events"))
    text = page.eval(f"{p}.querySelector('.generated').textContent")
    expected = httpx.post(server.url + "/v1/models/charlm/generate",
                          json={"prime": "the ", "length": 120, "temperature": 0.8, "seed": 7}, timeout=60).json()
    assert events == 121  # the prime, then one event per character
    assert text == expected["text"]
    assert page.eval(f"{p}.querySelector('.status').textContent") == "seed 7"


def test_a_forecast_is_plotted_and_fed_live(server, page):
    p = _panel("forecast")
    history = [round(float(v), 4) for v in series()[-13:]]  # window 12 + lag 1
    page.eval(f"{p}.querySelector('.history-input').value = {json.dumps(' '.join(map(str, history)))};"
              f"{p}.querySelector('.forecast-button').click()")
    page.wait_for(f"{p}.querySelector('.result').dataset.outputs")
    shown = json.loads(page.eval(f"{p}.querySelector('.result').dataset.outputs"))
    expected = httpx.post(server.url + "/v1/models/forecast/predict", json={"inputs": history, "horizon": 3}).json()
    assert shown == expected["outputs"]
    assert page.eval(f"{p}.querySelectorAll('svg polyline').length") == 2
    assert page.eval(f"{p}.querySelector('svg').dataset.points") == str(len(history) + 3)
    page.eval(f"{p}.querySelector('.live-button').click()")
    live = json.loads(page.wait_for(f"{p}.querySelector('.result').dataset.liveForecast"))
    assert page.eval(f"{p}.querySelector('.result').dataset.liveSteps") == str(len(history))
    np.testing.assert_allclose(live, expected["outputs"][0]["forecast"], rtol=1e-4)  # step by step = whole
    assert page.eval(f"{p}.querySelector('svg polyline.live') !== null")


def test_an_uploaded_image_gets_a_label(server, page, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    image = tmp_path / "four.png"
    Image.fromarray((load_digits().images[4] * 255 / 16).astype(np.uint8)).resize((32, 32)).save(image)
    document = page.call("DOM.getDocument")
    node = page.call("DOM.querySelector", nodeId=document["root"]["nodeId"],
                     selector='.panel[data-model="digits"] .file-input')
    page.call("DOM.setFileInputFiles", files=[str(image)], nodeId=node["nodeId"])
    page.eval(f"{_panel('digits')}.querySelector('.upload-button').click()")
    outputs = json.loads(page.wait_for(f"{_panel('digits')}.querySelector('.result').dataset.outputs"))
    with open(image, "rb") as f:
        expected = httpx.post(server.url + "/v1/models/digits/predict", files=[("files", ("four.png", f, "image/png"))])
    assert outputs == expected.json()["outputs"] and outputs[0]["input"] == "four.png"
