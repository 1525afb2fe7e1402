"""The recurrent layers' ONNX conversion, layer by layer through the backend registry.

- Every "onnx" backend is exported over EVERY configuration it declares (the grid of flag values
  below, filtered by ``supports``), bidirectional and two layers deep, with and without lengths,
  and onnxruntime must give the reference's outputs and final states.
- A made-up config flag is declined by every "onnx" backend.
- What no backend declares (layer norm, a projection; any cell under ``backends.only()``) is
  exported as ONNX Scans over the cells' own reference steps, and matches too.
"""
import dataclasses
import itertools

import pytest
import torch

pytest.importorskip("onnx")  # the extra rnnkit[onnx]
pytest.importorskip("onnxruntime")

from export_helpers import SIZES, agree, ops  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.cells import GRUConfig, LSTMConfig, RNNConfig  # noqa: E402
from rnnkit.export import TOLERANCE, ExportGraph, ExportSpec, export_model, max_abs_diff  # noqa: E402
from rnnkit.layers import backends  # noqa: E402

I, H = 4, 5
NODES = {"LSTM", "GRU", "RNN"}

# Every value each config field is exported at; a new config field must be added here, or the
# grid below fails: the "onnx" backends would otherwise go untested at the new flag's values.
FLAG_VALUES = {
    "bias": (True, False),
    "proj_size": (0, 2),
    "peephole": (False, True),
    "layer_norm": (False, True),
    "reset_after": (True, False),
    "nonlinearity": ("tanh", "relu"),
}
CONFIGS = {"lstm": LSTMConfig, "gru": GRUConfig, "rnn": RNNConfig}
LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}
SIZE_FIELDS = ("input_size", "hidden_size")


class LayerGraph(ExportGraph):
    """A bare batch-first rnnkit layer as a graph: x (B, T, I) [, lengths] -> y (B, T, D*H_out),
    h_n [, c_n] (L*D, B, ·)."""

    kind = "layer"

    def __init__(self, model, lengths):
        super().__init__(model, lengths)
        self.paired = model.kind.state_names is not None  # (h, c)

    def output_names(self):
        return ["y", "h_n", "c_n"] if self.paired else ["y", "h_n"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}, "lengths": {0: "batch"}}.get(
            name, {1: "batch"})

    def sample_inputs(self, batch, time, g):
        inputs = {"x": torch.randn(batch, time, self.original.input_size, generator=g)}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, lengths=None):
        y, state = model(x, lengths=lengths)
        return (y, *state) if self.paired else (y, state)


SPEC = ExportSpec(LayerGraph, lengths=True)


def _grid(cell: str):
    """Every configuration of the cell type over FLAG_VALUES."""
    names = [f.name for f in dataclasses.fields(CONFIGS[cell]) if f.name not in SIZE_FIELDS]
    for values in itertools.product(*(FLAG_VALUES[n] for n in names)):
        yield CONFIGS[cell](I, H, **dict(zip(names, values)))


def _declared():
    """(backend, config) for every registered "onnx" backend and configuration it declares."""
    for backend in backends.registered("onnx"):
        for config in _grid(backend.cell):
            if backend.supports(config):
                yield pytest.param(backend, config, id=f"{backend.name}-{config}")


def _layer(config):
    """A bidirectional two-layer rnnkit layer of this configuration, its weights (gains too) perturbed."""
    torch.manual_seed(0)
    flags = {k: v for k, v in dataclasses.asdict(config).items() if k not in SIZE_FIELDS}
    layer = LAYERS[config.cell](config.input_size, config.hidden_size, num_layers=2, bidirectional=True,
                                batch_first=True, **flags)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape))
    return layer


def _graph(layer, lengths):
    [(part, graph)] = SPEC.build(layer, lengths).items()
    return graph


def test_the_grid_knows_every_config_field():
    for config_cls in CONFIGS.values():
        for f in dataclasses.fields(config_cls):
            assert f.name in SIZE_FIELDS or f.name in FLAG_VALUES, f"add {f.name} to FLAG_VALUES"


@pytest.mark.parametrize("backend, config", list(_declared()))
def test_every_onnx_backend_matches_the_reference_on_every_configuration_it_declares(tmp_path, backend, config):
    layer = _layer(config)
    for lengths in (True, False):
        path = tmp_path / f"{lengths}.onnx"
        with backends.only(backend.name):
            export_model(layer, path, SPEC, lengths=lengths, verify=False)
            graph = _graph(layer, lengths)
        assert all(chosen is backend for chosen in graph.model.backends)  # both layers
        assert "Scan" not in ops(path)
        for batch, time in SIZES:
            assert agree(path, graph, batch, time, seed=batch) <= TOLERANCE, (lengths, batch, time)


@dataclasses.dataclass(frozen=True)
class MadeUp(LSTMConfig):
    """LSTMConfig with a flag that exists only in this test."""

    made_up: bool = True


def test_every_onnx_backend_declines_a_made_up_flag():
    onnx_backends = backends.registered("onnx")
    assert {b.cell for b in onnx_backends} == {"lstm", "gru", "rnn"}
    assert any(b.supports(LSTMConfig(I, H)) for b in onnx_backends)  # the flag is what they decline
    for backend in onnx_backends:
        assert not backend.supports(MadeUp(I, H)), f"onnx backend {backend.name!r} accepts an undeclared flag"
    assert backends.select("onnx", MadeUp(I, H)) is None


def test_the_reference_loop_hands_the_whole_config_to_the_cells_own_step():
    """The fallback cannot drop a flag: it calls the cell kind's step with the config itself, so a
    made-up flag reaches the step (which then decides what it means), and another kind's step runs
    as that kind's, not as rnnkit's LSTM."""
    from rnnkit.cells import BoundCell
    from rnnkit.export.loop import reference_loop

    layer = rnnkit.LSTM(I, H)
    seen = []

    def step(config, w, xp_t, state, gates=None):
        seen.append(config)
        return layer.kind.step(config, w, xp_t, state, gates)

    cell = BoundCell(layer.kind._replace(step=step), MadeUp(I, H), layer.cell(0).weights())
    x, h0 = torch.randn(4, 2, I), torch.zeros(1, 2, H)
    y, _ = reference_loop([cell], x, None, (h0, h0))
    assert seen and all(config == MadeUp(I, H) for config in seen)
    torch.testing.assert_close(y, layer(x)[0], rtol=1e-5, atol=1e-6)
    doubled = BoundCell(layer.kind._replace(step=lambda c, w, xp, s, g=None: (2 * layer.kind.step(c, w, xp, s)[0],
                                                                               layer.kind.step(c, w, xp, s)[1])),
                        LSTMConfig(I, H), layer.cell(0).weights())
    y2, _ = reference_loop([doubled], x, None, (h0, h0))
    torch.testing.assert_close(y2, 2 * layer(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [
    LSTMConfig(I, H, layer_norm=True), LSTMConfig(I, H, peephole=True, layer_norm=True),
    LSTMConfig(I, H, proj_size=3), LSTMConfig(I, H, bias=False, proj_size=2, peephole=True, layer_norm=True),
    GRUConfig(I, H, layer_norm=True), GRUConfig(I, H, bias=False, reset_after=False, layer_norm=True),
], ids=str)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")  # torch's, in the reference
def test_what_no_onnx_node_declares_runs_the_cells_own_steps_as_onnx_scans(tmp_path, config):
    layer = _layer(config)
    assert backends.select("onnx", layer.cell_config(0)) is None
    for lengths in (True, False):
        path = tmp_path / f"{lengths}.onnx"
        [info] = export_model(layer, path, SPEC, lengths=lengths)
        assert info.max_abs_diff <= TOLERANCE
        graph = _graph(layer, lengths)
        assert graph.model.backends == [None, None]
        found = ops(path)
        assert found["Scan"] == 4 and not NODES & set(found), found  # 2 layers x 2 directions
        for batch, time in SIZES + ((2, 1),):
            assert agree(path, graph, batch, time, seed=batch) <= TOLERANCE, (lengths, batch, time)
            inputs = graph.example(batch, time, seed=batch)
            with torch.no_grad():  # the converted copy in eager mode (the scans run eagerly) is rnnkit too
                eager = [out.numpy() for out in graph(*inputs.values())]
            assert max_abs_diff(eager, graph.reference(inputs)) <= TOLERANCE


@pytest.mark.parametrize("config", [LSTMConfig(I, H), GRUConfig(I, H), RNNConfig(I, H, nonlinearity="relu")], ids=str)
def test_with_no_backend_allowed_every_cell_type_exports_as_the_reference_loop(tmp_path, config):
    layer = _layer(config)
    with backends.only():
        [info] = export_model(layer, tmp_path / "loop.onnx", SPEC)
        assert _graph(layer, True).model.backends == [None, None]
    found = ops(info.path)
    assert info.max_abs_diff <= TOLERANCE and found["Scan"] == 4 and not NODES & set(found), found


def test_no_torchscript_is_left_in_the_package():
    from pathlib import Path

    root = Path(rnnkit.__file__).parent
    hits = sorted(str(path.relative_to(root)) for path in root.rglob("*.py") if "torch.jit" in path.read_text())
    assert not hits, f"torch.jit in {hits}"
