"""Every model whose config takes a cell runs each cell after 2017 (--cell in the tasks): a
forward and a backward on a small batch, every parameter reached (the CRF's transitions are not in the emissions), the outputs finite; the
language model's and the forecaster's streams equal their whole-sequence forward."""
import pytest
import torch

from rnnkit.models import (ClassifierConfig, CTCConfig, CTCModel, Forecaster, ForecasterConfig, LanguageModel,
                           LanguageModelConfig, SequenceClassifier, SequenceTagger, TaggerConfig)

NEW_CELLS = ["mingru", "minlstm", "indrnn", "sru", "slstm", "mlstm"]
B, T = 3, 7
LENGTHS = torch.tensor([7, 3, 5])


def _backward_reaches_every_parameter(model, loss):
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None and "crf" not in n]
    assert not missing, missing


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_classifier_tagger_ctc_and_forecaster_take_the_cell(cell):
    torch.manual_seed(0)
    words = torch.randint(1, 20, (B, T))
    for pooling in ("last", "max"):
        model = SequenceClassifier(ClassifierConfig(num_classes=3, vocab_size=20, embedding_dim=5, cell=cell,
                                                    hidden_size=8, num_layers=2, bidirectional=True, pooling=pooling))
        logits = model(words, LENGTHS)
        assert logits.shape == (B, 3)
        _backward_reaches_every_parameter(model, logits.logsumexp(-1).sum())
    tagger = SequenceTagger(TaggerConfig(vocab_size=20, num_tags=4, embedding_dim=5, cell=cell, hidden_size=8, crf=True))
    emissions = tagger(words, LENGTHS)
    assert emissions.shape == (B, T, 4)
    _backward_reaches_every_parameter(tagger, emissions.pow(2).sum())
    ctc = CTCModel(CTCConfig(num_features=6, num_classes=5, stack=2, cell=cell, hidden_size=8))
    out = ctc(torch.randn(B, T, 6), LENGTHS)
    _backward_reaches_every_parameter(ctc, out.log_probs.exp().sum())
    forecaster = Forecaster(ForecasterConfig(horizon=2, cell=cell, hidden_size=8, num_layers=2, highway=2))
    y = forecaster(torch.randn(B, T, 1))
    assert y.shape == (B, 2)
    _backward_reaches_every_parameter(forecaster, y.pow(2).sum())


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_the_language_model_streams_what_it_computes_whole(cell):
    torch.manual_seed(0)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_dim=4, cell=cell, hidden_size=8,
                                              num_layers=2)).eval()
    x = torch.randint(1, 12, (2, T))
    with torch.no_grad():
        logits, _ = model(x)
    stream = model.stream(batch_size=2)
    steps = torch.stack([stream.step(x[:, t]) for t in range(T)], 1)
    torch.testing.assert_close(steps, logits, rtol=1e-4, atol=1e-5)
