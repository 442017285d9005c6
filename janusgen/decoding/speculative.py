"""Self-speculative decoding: the NAR view drafts, the AR view verifies, the output is AR greedy's, up to
floating-point near-ties (below).

One model holds both distributions, so no second drafting model is needed. Each round, for every
unfinished sentence with accepted prefix s_0 .. s_t (s_0 = BOS):

1. Draft, one pass of the NAR view (no content cache: its rows see each other both ways): content
   s_0 .. s_t observed, [MASK] at t+1 .. n, EOS at n+1, where n is the predicted length (at least
   t + 1, at most the sentence's limit). The draft is the argmax of P_NAR at each placeholder, then EOS.
   It is kept for the next rounds and redrafted only once it is used up, even after a round that
   accepted none of it: a draft pass costs about 1.5 verify passes, more than the acceptance it regains
   (BENCHMARKS.md: 0.67x greedy against 0.60x when a miss also redrafted).
2. Verify, one pass of the AR view over the content-stream cache, which holds s_0 .. s_{t-1}: content
   rows s_t, d_{t+1} .. d_e at positions t .. e (causal), query rows at t+1 .. e+1 (at t .. e with
   `ar_query_position` "same"; with `ar_stream` "content", the content rows themselves predict). The
   row that predicts position p gives a_p, AR greedy's choice given the prefix and the draft before p
   (same bans and length limit as `greedy_search`).
3. Accept a_{t+1} .. a_{t+j+1}, where j counts the leading draft tokens with d_p = a_p: each of them
   is conditioned only on accepted tokens, so they are what greedy would choose (up to near-ties), and
   every round gains at least one token. With `block` = k, at most k draft tokens are verified a
   round: on a CPU a pass costs what its rows cost, and AR seldom agrees far ahead. The cache keeps the
   entries of s_t and the accepted draft tokens and drops the rest (rolled back), in one gather per
   layer.

`drafting` "fused" (DRAFTINGS) folds step 1 into step 2: the verify pass also carries the NAR rows of
a draft from the same prefix s_0 .. s_t (seeing only each other, as in step 1, while the AR rows never
see them), and the next round verifies that draft beyond its new prefix: one decoder pass per round
instead of up to two, for a draft one round older. The NAR rows' cache entries are dropped with the
rejected ones.

Near-ties: the verify pass computes each AR row among several rows of one pass, greedy search one row a
step; the two shapes may sum in different orders, so their logits can differ in the last bits. Where
the two best tokens are that close (within about 1e-6 relative) the two searches may choose different
ones, both argmaxes up to rounding, and from there the outputs go their own ways; greedy search on a
batch and on one sentence alone differ at such ties too. Everywhere else the outputs are greedy's
(tests/decoding/test_speculative.py builds a near-tie and checks both).

Sentences advance by different amounts: every per-sentence quantity (t, n, the draft length, j) is a
tensor, rows are padded to the longest draft of the round, and the visibility masks hide the padding
and each row's stale cache entries. The only Python loop is over rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from janusgen.decoding.common import (
    Hypotheses,
    ar_choices,
    ar_prefix,
    banned_tokens,
    ended_hypotheses,
    prime_cache,
)
from janusgen.decoding.mask_predict import length_candidates
from janusgen.model.layout import draft_input, nar_view, verify_rows
from janusgen.model.transformer import DecoderCache, Encoded, JanusTransformer


@dataclass
class SpeculativeStats:
    """Counts of a speculative decoding run (add runs together with `add`)."""

    sentences: int = 0
    rounds: int = 0  # draft-and-verify rounds, summed over sentences
    tokens: int = 0  # tokens emitted, EOS included, summed over sentences

    def add(self, other: SpeculativeStats) -> None:
        self.sentences += other.sentences
        self.rounds += other.rounds
        self.tokens += other.tokens

    @property
    def tokens_per_round(self) -> float:
        """Mean tokens a round emits: the accepted draft tokens plus AR's own next token."""
        return self.tokens / self.rounds if self.rounds else 0.0

    @property
    def accepted_draft_per_round(self) -> float:
        """Mean draft tokens AR agreed with per round (tokens_per_round - 1)."""
        return (self.tokens - self.rounds) / self.rounds if self.rounds else 0.0

    @property
    def rounds_per_sentence(self) -> float:
        return self.rounds / self.sentences if self.sentences else 0.0


def _encoder_rows(cache: DecoderCache, rows: torch.Tensor, alive: int) -> DecoderCache:
    """The encoder keys/values of sentences `rows` (of the `alive` in the cache), for a draft pass."""
    whole = cache.encoder_only()
    if rows.numel() < alive:
        for layer in whole.layers:
            layer.cross_k, layer.cross_v = layer.cross_k[rows], layer.cross_v[rows]
    return whole


# How drafts are made: "keep" a draft until it is used up, draft again "every_round", or "fused" into
# the verify pass (module docstring)
DRAFTINGS = ("keep", "every_round", "fused")
# Draft tokens verified a round: AR agrees with 0.6 of them on average and seldom with more than 4, and
# rows cost time on a CPU (BENCHMARKS.md: 0.70x greedy against 0.59x for the whole draft)
DEFAULT_BLOCK = 4


def _store_draft(
    model: JanusTransformer,
    draft: torch.Tensor,
    rows: torch.Tensor | slice,
    tokens: torch.Tensor,
    placeholder: torch.Tensor,
    nar_hidden: torch.Tensor | None,
    nar_ban: torch.Tensor,
) -> None:
    """Fill the placeholders of the NAR input `tokens` (D, W) with the NAR view's argmax (from its hidden
    states `nar_hidden`, (D, W, d); None when there is no placeholder) and store the result as the draft
    of sentences `rows` of `draft`."""
    if nar_hidden is not None:
        tokens[placeholder] = (model.logits(nar_hidden[placeholder]).float() + nar_ban).argmax(dim=-1)
    draft[rows] = model.cfg.pad_id
    draft[rows, : tokens.shape[1]] = tokens


@torch.inference_mode()
def speculative_search(
    model: JanusTransformer,
    enc: Encoded,
    max_len: torch.Tensor,
    length_penalty: float = 1.0,
    drafting: str = "keep",
    block: int | None = DEFAULT_BLOCK,
) -> tuple[Hypotheses, SpeculativeStats]:
    """Self-speculative decoding of encoded sources; `max_len` (B,) caps each output's length. The
    outputs are those of `greedy_search(model, enc, max_len, length_penalty)`, with the same scores, up
    to floating-point near-ties (module docstring).
    `drafting`: one of DRAFTINGS (module docstring). `block`: verify at most this many draft tokens a
    round (None: the whole rest of the draft); the rest of a kept draft waits for the next rounds."""
    if drafting not in DRAFTINGS:
        raise ValueError(f"drafting {drafting!r}: choose from {', '.join(DRAFTINGS)}")
    if block is not None and block < 1:
        raise ValueError(f"block {block}: verify at least 1 draft token a round, or None for all")
    fused = drafting == "fused"
    cfg = model.cfg
    device = enc.states.device
    b = max_len.shape[0]
    steps = int(max_len.max()) + 1 if b else 0  # the longest output, plus its EOS
    # the prefix the decoder reads before the outputs (BOS; a BART's start token, and BOS if forced), as
    # greedy_search: positions 0 .. o, outputs from o + 1 on; every position below is a sequence position
    prefix = ar_prefix(cfg)
    o = len(prefix.tokens) - 1
    seq = torch.full((b, o + 1 + steps), cfg.pad_id, device=device)  # (B, o + 1 + steps) prefix, outputs, EOS
    seq[:, : o + 1] = torch.tensor(prefix.tokens, device=device)
    log_prob = torch.zeros(b, device=device)
    rounds = torch.zeros(b, dtype=torch.long, device=device)
    if b == 0:
        return Hypotheses(seq[:, o + 1 :], rounds, log_prob, log_prob), SpeculativeStats()

    choices = ar_choices(model, prefix)  # as greedy_search's
    nar_ban = banned_tokens(model, cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.eos_id, cfg.mask_id)

    alive = torch.arange(b, device=device)  # (A,) batch index of each unfinished sentence
    limit = max_len + o  # (A,) position of the last output token allowed
    predicted = length_candidates(model, enc, max_len, length_beam=1)[:, 0] + o  # (A,) at the predicted n
    t = torch.full((b,), o, dtype=torch.long, device=device)  # (A,) position of s_t, the last accepted
    cache = DecoderCache()  # content entries s_0 .. s_{t-1} of each row (first t entries), encoder k/v
    prime_cache(model, enc, prefix, cache)  # a BART's start token before BOS
    # The draft of each sentence, position by position (BOS, d_1 .. d_n, EOS at n + 1), kept across
    # rounds: a round whose AR view disagrees early still leaves the rest of the draft, which often
    # lines up again after a substituted word, so the NAR view drafts again only for the sentences
    # that used up their draft (`redraft`).
    draft = torch.full((b, o + steps + 2), cfg.pad_id, device=device)
    # (A,) last draft position of each sentence; fused drafting starts without one (o - 1: nothing to
    # verify)
    n = torch.full((b,), o - 1 if fused else o, dtype=torch.long, device=device)
    redraft = torch.full((b,), not fused, dtype=torch.bool, device=device)
    while alive.numel():
        a = alive.numel()
        # ---- draft: one NAR pass over prefix, placeholders and EOS, for the sentences that need one
        if redraft.any():
            rows = redraft.nonzero().squeeze(1)
            n_new = torch.maximum(predicted[rows], t[rows] + 1).minimum(limit[rows])
            tokens, placeholder = draft_input(
                seq[alive[rows]], t[rows], n_new, cfg.pad_id, cfg.mask_id, cfg.eos_id
            )
            hidden = None  # no placeholder (every sentence at its limit): nothing to draft
            if placeholder.any():
                if not cache.layers:  # the first pass computes the encoder keys/values: keep them
                    draft_cache = DecoderCache()
                    hidden = model.decode(nar_view(tokens, cfg.pad_id), enc, draft_cache)
                    cache = draft_cache.encoder_only()
                else:
                    draft_cache = _encoder_rows(cache, rows, a)
                    hidden = model.decode(nar_view(tokens, cfg.pad_id), enc.index_select(rows), draft_cache)
            _store_draft(model, draft, rows, tokens, placeholder, hidden, nar_ban)
            n[rows] = n_new

        # ---- verify: one AR pass, content rows s_t, d_{t+1} .. d_e, query rows t+1 .. e+1
        k = (torch.minimum(n + 1, limit) - t).clamp(min=0, max=block)  # (A,) draft tokens d_{t+1} .. d_{t+k}
        r = int(k.max()) + 1  # content rows (and query rows) of the widest sentence
        i = torch.arange(r, device=device)[None]  # (1, R)
        used = i <= k[:, None]  # (A, R) rows holding s_t or a draft token
        at = (t[:, None] + i).clamp(max=draft.shape[1] - 1)
        content = torch.where(i == 0, seq[alive].gather(1, t[:, None]), draft.gather(1, at))
        content = content.masked_fill(~used, cfg.pad_id)
        content_pos = torch.where(used, t[:, None] + i, t[:, None])  # padding rows: any legal position
        predicted_pos = content_pos + 1  # the position each AR row predicts
        cached = cache.positions.shape[1] if cache.positions is not None else 0
        old = torch.arange(cached, device=device)[None, None, :] < t[:, None, None]  # (A, 1, C)
        causal = (i <= i.T)[None]  # (1, R, R): new row i sees new entries <= i
        visible = torch.cat([old.expand(a, r, cached), causal.expand(a, r, r)], dim=2)  # (A, R, C + R)
        nar = None  # fused: the NAR rows of the next draft, in the same pass
        if fused:
            n_next = torch.maximum(predicted, t + 1).minimum(limit)
            nar_tokens, nar_placeholder = draft_input(
                seq[alive], t, n_next, cfg.pad_id, cfg.mask_id, cfg.eos_id
            )
            nar = nar_view(nar_tokens, cfg.pad_id)
        view = model.verify_view(content, content_pos, visible, nar)
        hidden = model.decode(view, enc, cache)  # the cache grows by the content and NAR rows
        ar_hidden, nar_hidden = verify_rows(view, hidden, r)
        logp = F.log_softmax(model.logits(ar_hidden).float(), dim=-1)  # (A, R, V)
        if fused:  # the next round's draft
            _store_draft(model, draft, slice(None), nar_tokens, nar_placeholder, nar_hidden, nar_ban)
            n = n_next
        at_limit = (predicted_pos == limit[:, None] + 1)[:, :, None]
        first = (predicted_pos == o + 1)[:, :, None]
        best, choice = choices.apply_(logp, at_limit, first).max(dim=-1)  # (A, R): a_{t+1+i}

        # ---- accept: the leading agreements, AR's next token, cut after an EOS
        agree = (choice[:, :-1] == content[:, 1:]) & used[:, 1:]  # (A, R - 1)
        accepted = agree.long().cumprod(dim=1).sum(dim=1)  # (A,) j
        emitted = i < accepted[:, None] + 1  # (A, R) a_{t+1} .. a_{t+j+1}
        eos = emitted & (choice == cfg.eos_id)
        done = eos.any(dim=1)
        emitted = emitted & (eos.long().cumsum(dim=1) - eos.long() == 0)  # nothing after the EOS
        count = emitted.sum(dim=1)  # (A,)
        row, col = emitted.nonzero(as_tuple=True)
        seq[alive[row], t[row] + 1 + col] = choice[row, col]
        log_prob.index_add_(0, alive, (best * emitted).sum(dim=1))
        rounds[alive] += 1

        # ---- roll the cache back to s_0 .. s_{t+j} and drop finished sentences
        t = t + count
        if not fused:
            redraft = (t >= n) | (drafting == "every_round")
        kept = (~done).nonzero().squeeze(1)  # (A',)
        if kept.numel() == 0:
            break
        entries = int(t[kept].max())
        c = torch.arange(entries, device=device)[None]  # (1, C')
        t_old = (t - count)[kept, None]
        index = torch.where(c < t_old, c, cached + c - t_old).clamp(max=cached + r - 1)  # (A', C')
        cache.keep_entries(kept, index, drop_rows=kept.numel() < a)
        if kept.numel() < a:
            alive, limit, predicted, t = alive[kept], limit[kept], predicted[kept], t[kept]
            draft, n, redraft = draft[kept], n[kept], redraft[kept]
            enc = enc.index_select(kept)

    outputs = seq[:, o + 1 :]  # each with one EOS: the tokens chosen are those before it, and the EOS
    chosen = int((outputs == cfg.eos_id).int().argmax(dim=1).sum()) + b
    stats = SpeculativeStats(b, int(rounds.sum()), chosen)
    hyps = ended_hypotheses(model, outputs, log_prob, prefix, length_penalty)  # as greedy_search
    return hyps, stats
