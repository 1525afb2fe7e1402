"""Encoder-decoder with attention (seed 001/002): read a sentence, write its translation.

::

    source ids (B, S) --Embedding--> (B, S, E) --bidirectional LSTM/GRU (lengths)--> memory (B, S, 2H)
                                                          final states --bridge--> decoder state (L, B, D)
    y_{t-1} --Embedding--> (B, E) --decoder LSTM/GRU--> h_t (B, D) --attention over memory--> logits (B, V)

Attention (``attention=``):

* ``"luong"`` (Luong et al. 2015, "general" score, no input feeding): the decoder runs first,
  then ``e_ts = h_t^T W_a m_s``, ``a_t = softmax_s(e_t)``, ``c_t = sum_s a_ts m_s``,
  ``h~_t = tanh(W_c [c_t; h_t])``, ``logits = V h~_t``. As the decoder's input does not
  depend on attention, teacher-forced training runs the decoder over all steps at once.
* ``"bahdanau"`` (Bahdanau et al. 2014, additive): ``e_ts = v^T tanh(W_q h_{t-1} + U_k m_s)``,
  the context ``c_t`` goes into the decoder with the word: ``h_t = RNN([emb(y_{t-1}); c_t], h_{t-1})``,
  then ``h~_t = tanh(W_c [c_t; h_t])``. Training loops over the steps.
* ``"none"`` (Cho et al. 2014): no attention; the source summary (both final encoder states)
  goes into the decoder at every step, ``h_t = RNN([emb(y_{t-1}); s], h_{t-1})``, ``h~_t = h_t``.

Padded source positions get no attention (the mask comes from ``lengths``). The bridge
makes each decoder layer's initial state ``tanh(W_b [h_fwd; h_bwd])`` from the same encoder
layer's final states (and likewise ``c`` for an LSTM).

Decoding: :func:`greedy_decode` and :func:`beam_search` (batched; the score of a finished
hypothesis is its summed log-probability divided by ``length ** alpha``, length counting
the end token). Both forbid ``<pad>``, ``<unk>`` and ``<bos>`` and force ``<eos>`` at
``max_len``, so ``beam_size=1`` is greedy decoding exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .recurrent import CELLS, make_recurrent

__all__ = ["Seq2SeqConfig", "Seq2Seq", "Memory", "DecoderStep", "Seq2SeqOutput", "Hypothesis",
           "greedy_decode", "beam_search", "ATTENTIONS"]

ATTENTIONS = ("luong", "bahdanau", "none")


@dataclass
class Seq2SeqConfig:
    source_vocab_size: int
    target_vocab_size: int
    embedding_dim: int = 64  # E, source and target embeddings alike
    cell: str = "gru"  # one of models.CELLS, for the encoder and the decoder
    hidden_size: int = 128  # H of each encoder direction; the decoder has D = 2H
    num_layers: int = 1  # of the encoder and of the decoder
    attention: str = "luong"  # luong | bahdanau | none
    dropout: float = 0.1  # on the embeddings, before the output layer, and between layers
    pad_index: int = 0  # the Vocab's specials: <pad>, <unk>, <bos>, <eos>
    unk_index: int = 1
    bos_index: int = 2
    eos_index: int = 3

    def __post_init__(self) -> None:
        owner = "Seq2SeqConfig"
        for name in ("source_vocab_size", "target_vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if self.target_vocab_size <= max(self.pad_index, self.unk_index, self.bos_index, self.eos_index):
            raise ValueError(f"{owner}: target_vocab_size must exceed the special ids, got {self.target_vocab_size}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"{owner}: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")


class Memory(NamedTuple):
    """What the decoder reads from the encoder (batch axis first, so beams can repeat it)."""

    outputs: Tensor  # (B, S, 2H) encoder outputs, zero at padding
    mask: Tensor  # (B, S) True at real source positions
    keys: Tensor  # (B, S, D) U_k m_s for "bahdanau", W_a^T m_s for "luong"; (B, S, 0) for "none"
    summary: Tensor  # (B, 2H) the last layer's final forward and backward states


class DecoderStep(NamedTuple):
    logits: Tensor  # (B, V)
    state: object  # the decoder state: h (L, B, D), or (h, c) for an LSTM
    attention: Tensor | None  # (B, S) attention weights; None without attention


class Seq2SeqOutput(NamedTuple):
    logits: Tensor  # (B, T, V)
    attention: Tensor | None  # (B, T, S); None without attention


class Hypothesis(NamedTuple):
    tokens: list[int]  # target ids, without <bos> and <eos>
    log_prob: float  # sum of the log-probabilities of tokens and of the final <eos>
    score: float  # log_prob / (len(tokens) + 1) ** alpha


def _map_state(state, fn):
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


class Seq2Seq(nn.Module):
    """Bidirectional recurrent encoder, attention, recurrent decoder (see the module docstring)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = self.config = config
        E, H, D = c.embedding_dim, c.hidden_size, 2 * c.hidden_size
        self.source_embedding = nn.Embedding(c.source_vocab_size, E, padding_idx=c.pad_index)
        self.target_embedding = nn.Embedding(c.target_vocab_size, E, padding_idx=c.pad_index)
        self.encoder = make_recurrent(c.cell, E, H, c.num_layers, bidirectional=True, dropout=c.dropout)
        names = self.encoder.kind.state_names
        if names not in (None, ("h", "c")):  # the bridge maps h, and c where there is one
            raise ValueError(f"Seq2Seq: cell must have the state h or (h, c) (e.g. gru, lstm, mingru, sru), got "
                             f"{c.cell!r}, whose state is ({', '.join(names)})")
        self.is_lstm = names is not None  # (h, c): an LSTM's, or an SRU's
        self.bridge_h = nn.Linear(2 * H, D)
        self.bridge_c = nn.Linear(2 * H, D) if self.is_lstm else None
        extra = {"luong": 0, "bahdanau": 2 * H, "none": 2 * H}[c.attention]  # what goes in beside the word
        self.decoder = make_recurrent(c.cell, E + extra, D, c.num_layers, dropout=c.dropout)
        if c.attention == "luong":
            self.key = nn.Linear(2 * H, D, bias=False)  # W_a^T, applied once to the memory
        elif c.attention == "bahdanau":
            self.key = nn.Linear(2 * H, D, bias=False)  # U_k
            self.query = nn.Linear(D, D)  # W_q
            self.energy = nn.Linear(D, 1, bias=False)  # v
        self.combine = nn.Linear(2 * H + D, D) if c.attention != "none" else None  # W_c
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(D, c.target_vocab_size)  # V

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, object]:
        """source (B, S) ids, lengths (B,) -> (Memory, the decoder's initial state)."""
        x = self.dropout(self.source_embedding(source))  # (B, S, E)
        return self.encode_inputs(x, lengths)

    def encode_inputs(self, x: Tensor, lengths: Tensor) -> tuple[Memory, object]:
        """The encoder over inputs already made (B, S, F), lengths (B,) -> (Memory, the decoder's
        initial state): the recurrent encoder, the bridge to the decoder and the attention keys
        (``encode`` feeds it embedded ids; a subclass may feed other features, e.g. image columns)."""
        B, S = x.shape[:2]  # batch, source steps
        outputs, state = self.encoder(x, lengths=lengths)  # (B, S, 2H); each state part (2L, B, H)
        L, H = self.config.num_layers, self.config.hidden_size

        def both_directions(s: Tensor) -> Tensor:
            return s.view(L, 2, B, H).permute(0, 2, 1, 3).reshape(L, B, 2 * H)  # (L, B, 2H)

        h = both_directions(state[0] if self.is_lstm else state)
        init = torch.tanh(self.bridge_h(h))  # (L, B, D)
        if self.is_lstm:
            init = (init, torch.tanh(self.bridge_c(both_directions(state[1]))))
        mask = torch.arange(S, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, S)
        if self.config.attention == "none":
            keys = outputs.new_zeros(B, S, 0)
        else:
            keys = self.key(outputs)  # (B, S, D)
        return Memory(outputs, mask, keys, h[-1]), init

    # -- attention -------------------------------------------------------------------------
    def _attend(self, scores: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """scores (B, T, S) -> context (B, T, 2H), weights (B, T, S); padding gets weight 0."""
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        return weights @ memory.outputs, weights  # (B, T, 2H)

    def _bahdanau(self, h_tm1: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """h_tm1 (B, D) -> context (B, 2H), weights (B, S)."""
        e = self.energy(torch.tanh(self.query(h_tm1)[:, None, :] + memory.keys)).squeeze(-1)  # (B, S)
        context, weights = self._attend(e[:, None, :], memory)
        return context[:, 0], weights[:, 0]

    def _top_h(self, state) -> Tensor:
        return (state[0] if self.is_lstm else state)[-1]  # (B, D): the last layer's h

    # -- decoder ---------------------------------------------------------------------------
    def step(self, y_tm1: Tensor, state, memory: Memory) -> DecoderStep:
        """One decoder step: previous tokens y_tm1 (B,) -> logits (B, V), new state, attention."""
        emb = self.dropout(self.target_embedding(y_tm1))  # (B, E)
        kind, weights = self.config.attention, None
        if kind == "bahdanau":
            context, weights = self._bahdanau(self._top_h(state), memory)  # (B, 2H), (B, S)
            emb = torch.cat([emb, context], -1)  # (B, E + 2H)
        elif kind == "none":
            emb = torch.cat([emb, memory.summary], -1)  # (B, E + 2H)
        h_t, state = self.decoder(emb[:, None, :], state)  # (B, 1, D)
        h_t = h_t[:, 0]  # (B, D)
        if kind == "luong":
            scores = (memory.keys @ h_t[:, :, None]).transpose(1, 2)  # (B, 1, S): h_t^T W_a m_s
            context, weights = self._attend(scores, memory)
            context, weights = context[:, 0], weights[:, 0]  # (B, 2H), (B, S)
        if kind != "none":
            h_t = torch.tanh(self.combine(torch.cat([context, h_t], -1)))  # (B, D): h~_t
        return DecoderStep(self.out(self.dropout(h_t)), state, weights)

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor) -> Seq2SeqOutput:
        """Teacher forcing: source (B, S), lengths (B,), target_in (B, T) = <bos> y_1 .. y_{T-1}."""
        memory, state = self.encode(source, lengths)
        kind = self.config.attention
        if kind == "bahdanau":  # the context feeds the decoder: one step at a time
            steps = []
            for t in range(target_in.shape[1]):
                out = self.step(target_in[:, t], state, memory)
                state = out.state
                steps.append(out)
            return Seq2SeqOutput(torch.stack([s.logits for s in steps], 1),  # (B, T, V)
                                 torch.stack([s.attention for s in steps], 1))  # (B, T, S)
        # luong / none: the decoder's inputs are known in advance, so run it over all steps at once.
        B, T = target_in.shape
        emb = self.dropout(self.target_embedding(target_in))  # (B, T, E)
        if kind == "none":
            emb = torch.cat([emb, memory.summary[:, None, :].expand(B, T, -1)], -1)  # (B, T, E + 2H)
        h, _ = self.decoder(emb, state)  # (B, T, D)
        weights = None
        if kind == "luong":
            context, weights = self._attend(h @ memory.keys.transpose(1, 2), memory)  # (B, T, 2H), (B, T, S)
            h = torch.tanh(self.combine(torch.cat([context, h], -1)))  # (B, T, D)
        return Seq2SeqOutput(self.out(self.dropout(h)), weights)


# -- decoding --------------------------------------------------------------------------------

def _step_log_probs(model: Seq2Seq, y_tm1: Tensor, state, memory: Memory, last: bool):
    """log-probabilities (N, V) of the next token, the impossible tokens at -inf."""
    out = model.step(y_tm1, state, memory)
    logp = torch.log_softmax(out.logits.float(), -1)  # (N, V)
    c = model.config
    if last:  # the length limit: only <eos> is left
        keep = logp[:, c.eos_index].clone()
        logp = torch.full_like(logp, float("-inf"))
        logp[:, c.eos_index] = keep
    else:
        logp[:, [c.pad_index, c.unk_index, c.bos_index]] = float("-inf")
    return logp, out.state


def _check_decode_args(owner: str, source: Tensor, lengths: Tensor, max_len: int, alpha: float) -> None:
    if source.dim() != 2 or lengths.shape != source.shape[:1]:
        raise ValueError(f"{owner}: source must be (B, S) and lengths (B,), got {tuple(source.shape)} "
                         f"and {tuple(lengths.shape)}")
    if not (isinstance(max_len, int) and max_len >= 1):
        raise ValueError(f"{owner}: max_len must be an int >= 1, got {max_len!r}")
    if not alpha >= 0.0:
        raise ValueError(f"{owner}: alpha must be >= 0, got {alpha}")


@torch.no_grad()
def greedy_decode(model: Seq2Seq, source: Tensor, lengths: Tensor, max_len: int, alpha: float = 0.0) -> list[Hypothesis]:
    """The likeliest next token at every step, until <eos> (forced at step ``max_len``)."""
    _check_decode_args("greedy_decode", source, lengths, max_len, alpha)
    c = model.config
    memory, state = model.encode(source, lengths)
    B = source.shape[0]
    y = torch.full((B,), c.bos_index, dtype=torch.long, device=source.device)
    tokens = torch.zeros(B, 0, dtype=torch.long, device=source.device)  # (B, t)
    log_prob = torch.zeros(B, device=source.device)
    done = torch.zeros(B, dtype=torch.bool, device=source.device)
    for t in range(max_len):
        logp, state = _step_log_probs(model, y, state, memory, last=t == max_len - 1)
        best, y = logp.max(-1)  # (B,), (B,)
        log_prob += torch.where(done, torch.zeros_like(best), best)
        y = torch.where(done, torch.full_like(y, c.eos_index), y)
        tokens = torch.cat([tokens, y[:, None]], 1)
        done |= y == c.eos_index
        if bool(done.all()):
            break
    hyps = []
    for b in range(B):
        row = tokens[b].tolist()
        row = row[: row.index(c.eos_index)]
        lp = float(log_prob[b])
        hyps.append(Hypothesis(row, lp, lp / (len(row) + 1) ** alpha))
    return hyps


@torch.no_grad()
def beam_search(model: Seq2Seq, source: Tensor, lengths: Tensor, beam_size: int, max_len: int,
                alpha: float = 0.0) -> list[Hypothesis]:
    """Batched beam search; the best finished hypothesis of each sentence by ``log_prob / length ** alpha``.

    Each step extends the ``K`` live beams of every sentence by every token and keeps the
    ``2K`` best continuations (by summed log-probability): those among the first ``K`` that
    end in ``<eos>`` are finished, and the ``K`` best that do not end in ``<eos>`` live on
    (there are at least ``K``, as each beam adds one ``<eos>`` continuation). A sentence is
    done when its best finished score is at least its best live beam's summed log-probability
    divided by the live beam's current length (its tokens so far) ``** alpha``. For ``alpha = 0`` that is exact, as log-probabilities only fall: no live beam
    could still win. For ``alpha > 0`` it is the usual heuristic (as Hugging Face's
    ``early_stopping=False``). ``<eos>`` is forced at step ``max_len``. Stopping at the first
    finished hypothesis that beats every live beam, rather than after ``K`` finished ones,
    matters for confident models: there, poor beams end early and would fill the ``K``
    places before the best hypothesis ends.
    """
    _check_decode_args("beam_search", source, lengths, max_len, alpha)
    if not (isinstance(beam_size, int) and beam_size >= 1):
        raise ValueError(f"beam_search: beam_size must be an int >= 1, got {beam_size!r}")
    c = model.config
    K, B, device = beam_size, source.shape[0], source.device
    memory, state = model.encode(source, lengths)
    # Every sentence's memory and state, repeated for its K beams: row b*K + k is beam k of sentence b.
    memory = Memory(*(m.repeat_interleave(K, 0) for m in memory))
    state = _map_state(state, lambda s: s.repeat_interleave(K, 1))  # (L, B*K, D)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live beam to start with, so the first step does not pick K copies
    history = torch.full((B * K, 0), c.bos_index, dtype=torch.long, device=device)  # (B*K, t)
    y = torch.full((B * K,), c.bos_index, dtype=torch.long, device=device)
    finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(B)]  # (score, log_prob, tokens)
    done = [False] * B
    base = (torch.arange(B, device=device) * K)[:, None]  # (B, 1)
    for t in range(max_len):
        logp, state = _step_log_probs(model, y, state, memory, last=t == max_len - 1)  # (B*K, V)
        V = logp.shape[1]
        candidates = (scores[:, :, None] + logp.view(B, K, V)).view(B, K * V)  # (B, K*V)
        top, index = candidates.topk(min(2 * K, K * V), dim=1)  # (B, 2K), best first
        beam, token = index // V, index % V  # (B, 2K)
        is_eos = token == c.eos_index
        # 1. Finish: <eos> continuations ranked among the first K.
        for b, j in (is_eos[:, :K] & torch.isfinite(top[:, :K])).nonzero().tolist():
            if done[b]:
                continue
            lp = float(top[b, j])
            row = history[b * K + int(beam[b, j])].tolist()
            finished[b].append((lp / (len(row) + 1) ** alpha, lp, row))
        # 2. Live on: the K best continuations that do not end in <eos>.
        live = top.masked_fill(is_eos, float("-inf"))  # (B, 2K)
        keep = live.topk(K, dim=1).indices  # (B, K)
        scores = live.gather(1, keep)  # (B, K), best first
        # 3. Done: the best finished hypothesis beats what the best live beam would score now.
        live_bound = (scores[:, 0] / (t + 1) ** alpha).tolist()  # a live beam holds t + 1 tokens
        for b in range(B):
            if not done[b] and finished[b]:
                done[b] = max(f[0] for f in finished[b]) >= live_bound[b]
        if all(done):
            break
        scores[torch.tensor(done, device=device)] = float("-inf")  # a done sentence grows no further
        rows = (base + beam.gather(1, keep)).view(-1)  # (B*K,): the beam each continuation extends
        y = token.gather(1, keep).view(-1)  # (B*K,)
        history = torch.cat([history[rows], y[:, None]], 1)  # (B*K, t+1)
        state = _map_state(state, lambda s: s[:, rows])
    hyps = []
    for b in range(B):
        assert finished[b], "the forced <eos> at max_len finishes every sentence"
        score, lp, row = max(finished[b], key=lambda f: f[0])
        hyps.append(Hypothesis(row, lp, score))
    return hyps
