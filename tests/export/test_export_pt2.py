"""``--format pt2``: AOTInductor packages (compiled C++, tens of seconds each, so few here). A variant
model (peephole + layer norm, bidirectional, with lengths) and a single-step model package and give
rnnkit's outputs at two batch sizes and lengths; what torch.export cannot take is refused in one
line naming the graph. Every task's run as a package: test_export_tasks.py, marked slow."""
import shutil

import pytest
import torch

from rnnkit import LSTM  # noqa: E402
from rnnkit.export import TOLERANCE, Pt2Error, export_model, max_abs_diff, run_pt2  # noqa: E402
from rnnkit.exporting import export_graphs, export_onnx  # noqa: E402
from rnnkit.models import ClassifierConfig, SequenceClassifier  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="AOTInductor needs a C++ compiler")

SIZES = ((1, 3), (4, 11))  # (batch, time): neither is the traced (3, 6)


def _variant_classifier():
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=30, embedding_dim=5, cell="lstm",
                                                hidden_size=6, num_layers=2, bidirectional=True, pooling="max"))
    model.rnn = LSTM(5, 6, num_layers=2, batch_first=True, bidirectional=True, peephole=True, layer_norm=True)
    return model


def test_a_variant_model_with_lengths_packages_and_matches_rnnkit(tmp_path):
    model = _variant_classifier()
    [info] = export_onnx(model, tmp_path / "m.pt2", task="sentiment", lengths=True, format="pt2")
    assert info.path == tmp_path / "m.pt2" and info.path.is_file() and info.max_abs_diff <= TOLERANCE
    [graph] = export_graphs(model, task="sentiment", lengths=True).values()
    for batch, time in SIZES:
        inputs = graph.example(batch, time, seed=batch)
        assert max_abs_diff(run_pt2(info.path, inputs), graph.reference(inputs)) <= TOLERANCE, (batch, time)


def test_the_step_model_packages(tmp_path):
    layer = LSTM(4, 5, num_layers=2, layer_norm=True).eval()
    [info] = export_model(layer, tmp_path / "step.pt2", None, step=True, format="pt2")
    assert info.inputs == ("x_t", "h", "c") and info.max_abs_diff <= TOLERANCE


def test_what_torch_export_cannot_take_is_one_line_naming_the_graph(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("a made-up refusal\nwith a second line")

    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(Pt2Error, match=r"^export --format pt2: torch.export cannot export the classifier graph: "
                                       r"RuntimeError: a made-up refusal$"):
        export_onnx(_variant_classifier(), tmp_path / "m.pt2", task="sentiment", format="pt2")
    with pytest.raises(ValueError, match=r"path must end in \.pt2, got '.*m\.onnx'"):
        export_onnx(_variant_classifier(), tmp_path / "m.onnx", task="sentiment", format="pt2")
