"""Autoregressive decoding with the AR view and a key/value cache: greedy and batched beam search.

Each time step appends ONE content row (the token at position t) and runs ONE query row ([MASK] at
position t + 1, or t with `ar_query_position` "same"), whose output is P_AR(s_{t+1} | s_<=t, x). The
content keys/values grow in the cache; the encoder keys/values are computed on the first step and
reused. A converted BART's start token (and a forced BOS) go into the cache before the first step
(`decoding.common.DecoderPrefix`).

Both strategies share one loop (`_Search.run`, after OpenNMT's DecodeStrategy): the per-sentence length
limit (only EOS may follow the last allowed token), stopping, and dropping finished sentences from the
batch. They differ only in `advance` (which tokens to keep) and in their own bookkeeping. There is no
loop over sentences or beams: every step works on whole tensors (topk / gather / index_select).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from janusgen.decoding.common import (
    Hypotheses,
    ar_choices,
    ar_prefix,
    drop_leading_bos,
    ended_hypotheses,
    length_normalized,
)
from janusgen.decoding.stepper import ar_step
from janusgen.model.transformer import Encoded, JanusTransformer


class _Search:
    """Shared time loop. Rows are sentence-major: `width` decoder rows per unfinished sentence."""

    width = 1

    def __init__(
        self, model: JanusTransformer, max_len: torch.Tensor, length_penalty: float, compiled: bool = False
    ) -> None:
        self.model = model
        self.cfg = model.cfg
        self.length_penalty = length_penalty
        self.compiled = compiled  # the step compiled with static shapes (decoding/stepper.py)
        # (A,) batch index of each unfinished ("alive") sentence
        self.alive = torch.arange(max_len.shape[0], device=max_len.device)
        self.limit = max_len  # (A,) most output tokens per unfinished sentence
        self.steps = int(max_len.max()) + 1 if max_len.numel() else 0  # the longest output, plus its EOS
        self.limit_steps = set(max_len.tolist())  # the steps at which some sentence is at its limit
        # what the decoder reads before the first chosen token: BOS, or a BART's start token (and BOS)
        self.prefix = ar_prefix(self.cfg)
        self.choices = ar_choices(model, self.prefix)

    def advance(self, logp: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Choose the tokens of position t + 1 from logp (rows, V). Returns the tokens (rows,), the old
        row each new row continues (None: the same row), and which sentences are done (A,)."""
        raise NotImplementedError

    def keep(self, kept: torch.Tensor) -> None:
        """Drop finished sentences from the subclass's per-sentence state: keep entries `kept` (A',)."""

    def result(self) -> Hypotheses:
        raise NotImplementedError

    def run(self, enc: Encoded) -> Hypotheses:
        # `w` decoder rows per sentence, all attending to the sentence's one row of `enc` (the decoder
        # layers fold them into one row of queries: the encoder keys/values are not copied per beam)
        w = self.width
        device = enc.states.device
        step = ar_step(self.model, enc, self.prefix, w, self.steps, self.compiled)
        # (rows,) the token the step reads: the prefix's last, then each chosen one
        last = torch.full((enc.states.shape[0] * w,), self.prefix.tokens[-1], device=device)
        # output t (0-based) sits at position len(prefix) + t
        positions = torch.arange(self.steps + 1, device=device) + len(self.prefix.tokens) - 1
        for t in range(self.steps):
            logp = step(last, positions[t : t + 2])  # (rows, V)
            at_limit = (self.limit == t).repeat_interleave(w)[:, None] if t in self.limit_steps else None
            logp = self.choices.apply_(logp, at_limit, first=t == 0)  # at_limit: (rows, 1)
            last, origin, done = self.advance(logp, t)
            done = done | (self.limit == t)
            kept = (~done).nonzero().squeeze(1)  # (A',)
            if kept.numel() == 0:
                break
            sentences = None
            if kept.numel() < done.numel():  # some sentences finished: drop their rows everywhere
                kept_rows = (kept[:, None] * w + torch.arange(w, device=device)).view(-1)  # (A'·w,)
                self.alive, self.limit = self.alive[kept], self.limit[kept]
                self.keep(kept)
                last = last[kept_rows]
                origin = kept_rows if origin is None else origin[kept_rows]
                sentences = kept
            if origin is not None:
                step.reorder(origin, sentences)
        return self.result()


class _Greedy(_Search):
    def __init__(
        self, model: JanusTransformer, max_len: torch.Tensor, length_penalty: float, compiled: bool = False
    ) -> None:
        super().__init__(model, max_len, length_penalty, compiled)
        b = max_len.shape[0]
        self.tokens = torch.full((b, self.steps), self.cfg.pad_id, device=max_len.device)  # outputs then EOS
        self.log_prob = torch.zeros(b, device=max_len.device)

    def advance(self, logp: torch.Tensor, t: int) -> tuple[torch.Tensor, None, torch.Tensor]:
        best, token = logp.max(dim=-1)
        self.tokens[self.alive, t] = token
        self.log_prob.index_add_(0, self.alive, best)
        return token, None, token == self.cfg.eos_id

    def result(self) -> Hypotheses:
        return ended_hypotheses(self.model, self.tokens, self.log_prob, self.prefix, self.length_penalty)


class _Beam(_Search):
    """Beam search in fairseq's manner: a hypothesis that ends with EOS leaves the beam for the sentence's
    pool of finished hypotheses and the beam is refilled from the best non-EOS continuations; a sentence
    stops (early stopping) once `beam` hypotheses have finished, or at its length limit. The pool keeps
    the best `beam` finished ones by length-normalised score; the best of them is the output."""

    def __init__(
        self,
        model: JanusTransformer,
        max_len: torch.Tensor,
        length_penalty: float,
        beam: int,
        compiled: bool = False,
    ) -> None:
        super().__init__(model, max_len, length_penalty, compiled)
        self.width = beam
        b, device = max_len.shape[0], max_len.device
        first = torch.full((beam,), -math.inf, device=device)
        first[0] = 0.0  # all beams start as BOS: expand only one of them at the first step
        self.scores = first.expand(b, beam).clone()  # (A, K) sum of log-probs of each live beam
        self.history = torch.empty(b, beam, 0, dtype=torch.long, device=device)  # (A, K, t) output tokens
        # pool of finished hypotheses, by batch index
        self.pool_score = torch.full((b, beam), -math.inf, device=device)  # (B, K) length-normalised
        self.pool_log_prob = torch.zeros(b, beam, device=device)
        self.pool_len = torch.zeros(b, beam, dtype=torch.long, device=device)
        self.pool_tokens = torch.full((b, beam, max(self.steps - 1, 0)), self.cfg.pad_id, device=device)

    def normalized(self, log_prob: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The length-normalised score of `chosen` chosen tokens (EOS included) and a forced BOS."""
        return length_normalized(log_prob, chosen + self.prefix.counted, self.length_penalty)

    def outputs(self, hyps: Hypotheses) -> Hypotheses:
        """The outputs without a BOS the model chose first (a BART without forced BOS)."""
        return drop_leading_bos(hyps, self.cfg.bos_id, self.cfg.pad_id) if self.prefix.free_bos else hyps

    def advance(self, logp: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, v = self.width, logp.shape[-1]
        a = self.alive.shape[0]
        cand = logp.view(a, k, v).add_(self.scores[:, :, None]).view(a, k * v)  # (A, K·V), in place
        # 2K candidates: at most K of them (one per beam) end with EOS, so K others can continue
        top, index = cand.topk(2 * k, dim=1)  # (A, 2K)
        beam, token = index // v, index % v
        is_eos = token == self.cfg.eos_id

        # finished: EOS among the top K candidates (a worse one could not enter the beam anyway)
        finished = is_eos[:, :k] & top[:, :k].isfinite()
        # most steps finish nothing: then the pool stays as it is (one read from the device per step,
        # where the loop reads one anyway)
        score = (
            self._pool(finished, top[:, :k], beam[:, :k], t)
            if finished.any()
            else self.pool_score[self.alive]
        )

        # the beam goes on with the best K candidates that did not end
        self.scores, pick = top.masked_fill(is_eos, -math.inf).topk(k, dim=1)  # (A, K)
        beam, token = beam.gather(1, pick), token.gather(1, pick)
        history = self.history.gather(1, beam[:, :, None].expand(-1, -1, t))  # (A, K, t)
        self.history = torch.cat([history, token[:, :, None]], dim=2)  # (A, K, t + 1)
        origin = (torch.arange(a, device=beam.device)[:, None] * k + beam).view(-1)  # (A·K,) row continued
        done = score.isfinite().all(dim=1) | ~self.scores[:, 0].isfinite()
        return token.view(-1), origin, done

    def _pool(
        self, finished: torch.Tensor, log_prob: torch.Tensor, beam: torch.Tensor, t: int
    ) -> torch.Tensor:
        """Add the `finished` candidates (A, K) (log-probs `log_prob`, continuing beams `beam`) to the
        pools of finished hypotheses; the pools' scores (A, K)."""
        k, alive = self.width, self.alive
        fin_score = self.normalized(log_prob, torch.tensor(t + 1)).masked_fill(~finished, -math.inf)
        fin_tokens = self.history.gather(1, beam[:, :, None].expand(-1, -1, t))  # (A, K, t)
        fin_tokens = F.pad(fin_tokens, (0, self.pool_tokens.shape[2] - t), value=self.cfg.pad_id)  # (A, K, T)
        score, pick = torch.cat([self.pool_score[alive], fin_score], dim=1).topk(k, dim=1)  # (A, K)
        self.pool_score[alive] = score
        self.pool_log_prob[alive] = torch.cat([self.pool_log_prob[alive], log_prob], dim=1).gather(1, pick)
        fin_len = torch.full_like(pick, t)  # (A, K) every new finished hypothesis has t tokens
        self.pool_len[alive] = torch.cat([self.pool_len[alive], fin_len], dim=1).gather(1, pick)
        pool_tokens = torch.cat([self.pool_tokens[alive], fin_tokens], dim=1)  # (A, 2K, T)
        self.pool_tokens[alive] = pool_tokens.gather(1, pick[:, :, None].expand(-1, -1, pool_tokens.shape[2]))
        return score

    def keep(self, kept: torch.Tensor) -> None:
        self.scores, self.history = self.scores[kept], self.history[kept]

    def result(self) -> Hypotheses:
        best = self.pool_score.argmax(dim=1, keepdim=True)  # (B, 1)
        tokens = self.pool_tokens.gather(1, best[:, :, None].expand(-1, -1, self.pool_tokens.shape[2]))
        hyps = Hypotheses(
            tokens.squeeze(1),
            self.pool_len.gather(1, best).squeeze(1),
            self.pool_log_prob.gather(1, best).squeeze(1),
            self.pool_score.gather(1, best).squeeze(1),
        )
        return self.outputs(hyps)


@torch.inference_mode()
def greedy_search(
    model: JanusTransformer,
    enc: Encoded,
    max_len: torch.Tensor,
    length_penalty: float = 1.0,
    compiled: bool = False,
) -> Hypotheses:
    """Greedy AR decoding of encoded sources; `max_len` (B,) caps the output tokens of each sentence;
    `compiled`: the step compiled with static shapes (decoding/stepper.py).
    `length_penalty` only sets the reported normalised score (same definition as beam search)."""
    return _Greedy(model, max_len, length_penalty, compiled).run(enc)


@torch.inference_mode()
def beam_search(
    model: JanusTransformer,
    enc: Encoded,
    max_len: torch.Tensor,
    beam: int = 5,
    length_penalty: float = 1.0,
    compiled: bool = False,
) -> Hypotheses:
    """Batched beam search; hypotheses are compared by log_prob / (n + 1)^length_penalty, where n + 1
    counts the output tokens and EOS (fairseq's normalisation). `compiled`: as for greedy_search."""
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    return _Beam(model, max_len, length_penalty, beam, compiled).run(enc)
