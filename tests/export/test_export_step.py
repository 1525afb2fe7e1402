"""``--step``: a model's recurrent stack as one time step, the state in and out. Fed its own state
step after step in onnxruntime, it gives what ``rnnkit.Stream`` gives on the same layers, for
standard layers and variants, at two batch sizes; the file has no loop over time; what has no step
model (bidirectional, seq2seq) is refused in one line. (The command: test_export_tasks.py.)"""
import pytest
import torch

pytest.importorskip("onnx")  # the extra rnnkit[onnx]
pytest.importorskip("onnxruntime")

from export_helpers import ops  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.export import TOLERANCE, StepGraph, export_model, max_abs_diff, run_onnx  # noqa: E402
from rnnkit.exporting import export_onnx  # noqa: E402
from rnnkit.models import ClassifierConfig, LanguageModel, LanguageModelConfig, SequenceClassifier  # noqa: E402

I, H = 4, 5


def _perturbed(layer):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape))
    return layer.eval()


LAYERS = {
    "lstm": lambda: rnnkit.LSTM(I, H, num_layers=2),
    "lstm-peephole-layer_norm": lambda: rnnkit.LSTM(I, H, num_layers=2, peephole=True, layer_norm=True),
    "lstm-proj": lambda: rnnkit.LSTM(I, H, num_layers=2, proj_size=3, batch_first=True),
    "gru-cho-layer_norm": lambda: rnnkit.GRU(I, H, num_layers=2, reset_after=False, layer_norm=True),
    "rnn-relu": lambda: rnnkit.RNN(I, H, num_layers=2, nonlinearity="relu"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")  # torch's, in the reference
def test_the_step_model_fed_its_own_state_steps_as_rnnkit_stream(tmp_path, name):
    layer = _perturbed(LAYERS[name]())
    [info] = export_model(layer, tmp_path / "step.onnx", None, step=True)
    paired = layer.kind.state_names is not None
    assert info.inputs == (("x_t", "h", "c") if paired else ("x_t", "h"))
    assert info.outputs == (("y_t", "h_n", "c_n") if paired else ("y_t", "h_n"))
    assert info.max_abs_diff <= TOLERANCE
    assert not {"Scan", "Loop", "LSTM", "GRU", "RNN"} & set(ops(info.path))  # the cells' steps, no loop
    torch.manual_seed(1)
    for batch in (1, 3):
        stream = rnnkit.Stream(layer, batch_size=batch)
        state = stream.state  # zeros, (L, B, ·)
        state = {"h": state[0], "c": state[1]} if paired else {"h": state}
        for x_t in torch.randn(6, batch, I):
            want = stream.step(x_t)
            y_t, *parts = run_onnx(info.path, {"x_t": x_t, **state})
            assert max_abs_diff([y_t], [want]) <= TOLERANCE
            state = dict(zip(state, (torch.from_numpy(p) for p in parts)))
        assert max_abs_diff([p.numpy() for p in state.values()], list(stream.state if paired else (stream.state,))) \
            <= TOLERANCE


def test_a_task_model_steps_its_recurrent_stack(tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_dim=4, cell="ln_gru", hidden_size=5,
                                              num_layers=2))
    [info] = export_onnx(model, tmp_path / "lm.step.onnx", task="charlm", step=True)
    assert info.inputs == ("x_t", "h") and info.outputs == ("y_t", "h_n") and info.max_abs_diff <= TOLERANCE
    graph = StepGraph(model)
    inputs = graph.example(2, 1)
    assert list(inputs) == ["x_t", "h"] and inputs["x_t"].shape == (2, 4)  # the embedding's width


def test_what_has_no_step_model_is_refused_in_one_line(tmp_path):
    torch.manual_seed(0)
    bidirectional = SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=30, embedding_dim=5, cell="lstm",
                                                        hidden_size=6, bidirectional=True))
    with pytest.raises(ValueError, match="bidirectional, and a backward direction needs the future steps"):
        export_onnx(bidirectional, tmp_path / "m.onnx", task="sentiment", step=True)
    from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig

    seq2seq = Seq2Seq(Seq2SeqConfig(source_vocab_size=15, target_vocab_size=12, embedding_dim=5, hidden_size=4))
    with pytest.raises(ValueError, match="Seq2Seq has no rnnkit RNN/LSTM/GRU stack"):
        export_onnx(seq2seq, tmp_path / "m.onnx", task="translate", step=True)
    assert not (tmp_path / "m.onnx").exists()
