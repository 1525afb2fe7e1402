"""The inspect report opened in a real headless browser (Debian's Chromium): the coloured text
and the heatmaps are drawn, and the page's script raised no error."""
import os
import re
import shutil
import subprocess

import pytest
import torch

from rnnkit.data import Vocab
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.viz.inspect import inspect_text, write_html


def _chromium():
    for name in (os.environ.get("RNNKIT_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium to open the report in (apt-get install chromium; .ci/run installs it)")

TEXT = 'Enter the KING (with a letter)\n"Good night, sweet lord," said she.\nExit [all].\n' * 3


def _browser(tmp_path, *args) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    torch.manual_seed(0)
    vocab = Vocab.build([list(TEXT)], specials=("<pad>", "<unk>"))
    model = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_dim=8, hidden_size=16, num_layers=2))
    return write_html(inspect_text(model, vocab, TEXT, title="browser test"), tmp / "report.html", unit=3)


def test_dom_has_coloured_text_and_painted_heatmaps(report, tmp_path):
    done = _browser(tmp_path, "--dump-dom", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert re.search(r'<div id="errors">\s*</div>', dom), "the page's script raised an error"
    assert 'data-drawn="1"' in dom
    spans = re.findall(r'<span data-t="(\d+)" style="background: rgb\((\d+), (\d+), (\d+)\);">', dom)
    assert len(spans) == len(TEXT)  # every character coloured
    assert len({tuple(rgb) for _, *rgb in spans}) > 5  # by values that vary along the text
    assert re.search(r'id="text"[^>]*data-unit="3"', dom)
    for canvas in ("strip", "heat"):
        tag = re.search(rf'<canvas id="{canvas}"[^>]*>', dom).group(0)
        width, height = (int(re.search(rf'{a}="(\d+)"', tag).group(1)) for a in ("width", "height"))
        painted = int(re.search(r'data-painted="(\d+)"', tag).group(1))
        assert width >= len(TEXT) and height > 0 and painted > 0.3 * width * height, (canvas, tag)
    assert len(re.findall(r"<tr><td>(position in line|inside quotes|inside brackets|inside a word|speaker)", dom)) == 5
    assert dom.count("<option") >= 2 + 16  # layers, units, quantities


def test_screenshot_shows_the_colours(report, tmp_path):
    import matplotlib.image as mpimg

    shot = tmp_path / "shot.png"
    done = _browser(tmp_path, "--window-size=1200,900", f"--screenshot={shot}", report.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]  # (900, 1200, 3) in [0, 1]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    reddish = ((r - b > 0.15) & (r - g > 0.1)).sum()
    bluish = ((b - r > 0.15) & (b - g > 0.05)).sum()
    assert reddish > 2000 and bluish > 2000, (reddish, bluish)
