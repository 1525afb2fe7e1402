"""A speech run served: a WAV upload is transcribed as `rnnkit predict RUN file.wav` does, and the
page records audio (Chromium's fake microphone) and shows a transcript. Slow: the run is
trained on synthesised speech."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the speech data needs espeakng-loader")
pytest.importorskip("librosa", reason="the speech features need librosa")
sf = pytest.importorskip("soundfile", reason="reading audio needs soundfile")

import rnnkit  # noqa: E402
from conftest import Server, httpx  # noqa: E402

pytestmark = pytest.mark.slow

TINY = dict(train_size=120, val_size=20, test_size=20, min_digits=1, max_digits=2, labels="words", stack=4,
            hidden_size=32, num_layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from rnnkit.data.datasets import spoken_digits as sd
    from rnnkit.runs import train
    from rnnkit.tasks.speech import SpeechOptions
    from rnnkit.training import TrainConfig

    root = tmp_path_factory.mktemp("speech")
    train("speech", SpeechOptions(cache_dir=str(root / "cache"), **TINY),
          TrainConfig(epochs=1, batch_size=16, lr=3e-3, seed=0), root / "speech", progress=False)
    audio = sd.Espeak.get().synthesize("seven two", "en-us").astype(np.float32) / 32768
    sf.write(root / "seven.wav", audio, sd.ESPEAK_RATE, subtype="PCM_16")
    server = Server([root / "speech"], cwd=root)
    yield root, server
    server.stop()


def test_a_wav_upload_is_transcribed_as_predict_does(speech):
    root, server = speech
    with open(root / "seven.wav", "rb") as f:
        r = httpx.post(server.url + "/v1/models/speech/predict", files=[("files", ("seven.wav", f, "audio/wav"))],
                       timeout=60)
    assert r.status_code == 200, r.text
    expected = rnnkit.load(root / "speech").predict([str(root / "seven.wav")])
    assert r.json()["outputs"] == [{**expected[0], "input": "seven.wav"}]
    r = httpx.post(server.url + "/v1/models/speech/predict", json={"inputs": [str(root / "seven.wav")]})
    assert (r.status_code, r.json()["field"]) == (422, "inputs")  # a path in JSON is never opened


def test_the_page_records_and_transcribes(speech, tmp_path):
    from test_page_browser import CHROMIUM, Browser

    if CHROMIUM is None:
        pytest.skip("no Chromium")
    _, server = speech
    browser = Browser(tmp_path / "profile", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      "--autoplay-policy=no-user-gesture-required")
    try:
        browser.call("Page.navigate", url=server.url + "/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        panel = "document.querySelector('.panel[data-model=\"speech\"]')"
        browser.eval(f"{panel}.querySelector('.record-button').click()")
        browser.wait_for(f"{panel}.querySelector('.record-button').textContent === 'Stop'")
        browser.eval("new Promise(r => setTimeout(r, 1500))")
        browser.eval(f"{panel}.querySelector('.record-button').click()")
        outputs = json.loads(browser.wait_for(f"{panel}.querySelector('.result').dataset.outputs || ''"))
        assert outputs[0]["input"] == "recording.wav" and outputs[0]["frames"] > 50 and "text" in outputs[0]
        assert browser.eval("errors.textContent") == ""
    finally:
        browser.close()
