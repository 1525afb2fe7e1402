"""The HTML report is its template (package data) with every placeholder filled, and nothing else."""
import re
from pathlib import Path

import pytest
import torch

import rnnkit.viz
from rnnkit.data import Vocab
from rnnkit.models import LanguageModel, LanguageModelConfig
from rnnkit.viz.report import PLACEHOLDER, render_template, report_template, write_html
from rnnkit.viz.text import inspect_text

TEXT = 'Enter the KING (with a letter)\n"Good night, sweet lord," said she.\n'


@pytest.fixture(scope="module")
def inspection():
    torch.manual_seed(0)
    vocab = Vocab.build([list(TEXT)], specials=("<pad>", "<unk>"))
    model = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_dim=6, hidden_size=8, num_layers=2))
    return inspect_text(model, vocab, TEXT, title="a <tiny> report")


def test_the_template_is_package_data_with_its_placeholders():
    path = Path(rnnkit.viz.__file__).parent / "templates" / "report.html"
    assert report_template() == path.read_text(encoding="utf-8")
    assert set(PLACEHOLDER.findall(report_template())) == {"TITLE", "GRADIENTS", "DATA"}
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert re.search(r'^"rnnkit\.viz" = \["templates/\*\.html"\]$', pyproject, re.M)  # shipped in the wheel


def test_the_page_is_the_template_with_every_placeholder_filled(inspection, tmp_path):
    inspection.gradients_png = b"\x89PNG fake"
    try:
        page = write_html(inspection, tmp_path / "r.html").read_text(encoding="utf-8")
    finally:
        inspection.gradients_png = None
    assert not PLACEHOLDER.search(page), "a placeholder was left unfilled"
    # every piece of the template between placeholders is in the page, in order
    pieces = PLACEHOLDER.split(report_template())[::2]
    at = 0
    for piece in pieces:
        found = page.find(piece, at)
        assert found >= 0, f"template text missing from the page: {piece[:80]!r}"
        at = found + len(piece)
    assert page.count("<title>a &lt;tiny&gt; report</title>") == 1
    assert page.count("<h1>a &lt;tiny&gt; report</h1>") == 1
    assert '<img id="gradients"' in page
    assert re.search(r'<script id="data" type="application/json">\{"title":"a <tiny> report"', page)


def test_render_template_fills_once_and_refuses_a_mismatch():
    template = "<p>{{A}}</p><i>{{B}}</i>{{A}}"
    assert render_template(template, {"A": "{{B}}", "B": "b"}) == "<p>{{B}}</p><i>b</i>{{B}}"  # values are not rescanned
    with pytest.raises(ValueError, match=r"placeholders are \['A', 'B'\], got values for \['A'\]"):
        render_template(template, {"A": "a"})
    with pytest.raises(ValueError, match=r"got values for \['A', 'B', 'C'\]"):
        render_template(template, {"A": "a", "B": "b", "C": "c"})
