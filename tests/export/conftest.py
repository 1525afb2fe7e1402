"""The export grids' split between CI and ``pytest -m slow``.

Through ``torch.export`` and the dynamo ONNX exporter one export of a variant layer takes 5-20 s
here (the TorchScript exporter took well under 1 s), and the grids below took ~8.5 minutes at a
load average of 4. CI runs a cross-section of each grid: every kind of graph (native node, Scan
over the cells' steps, both cell types with and without layer norm, the seq2seq and pt2
paths) at least once; ``pytest -m slow tests/export`` runs every case.
"""
import pytest

# test function -> the ids CI runs (substrings of the parameter id); its other cases are slow
CROSS_SECTION = {
    "test_what_no_onnx_node_declares_runs_the_cells_own_steps_as_onnx_scans": (
        "bias=True, proj_size=0, peephole=True, layer_norm=True",
        "bias=False, reset_after=False, layer_norm=True",
    ),
    "test_every_onnx_backend_matches_the_reference_on_every_configuration_it_declares": ("bias=True",),
    "test_every_cell_exports_bidirectional_deep_with_and_without_lengths": (
        "peephole_lstm-", "ln_gru-", "rnn_relu-",
    ),
    "test_seq2seq_exports_encoder_and_decoder_step": ("lstm-luong",),
    "test_a_variant_model_with_lengths_packages_and_matches_rnnkit": (),
}


def pytest_collection_modifyitems(items):
    for item in items:
        keep = CROSS_SECTION.get(item.originalname)
        if keep is None:
            continue
        ident = item.callspec.id if hasattr(item, "callspec") else ""
        if not any(k in ident for k in keep):
            item.add_marker(pytest.mark.slow)
