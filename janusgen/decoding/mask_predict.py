"""Non-autoregressive decoding: Mask-Predict with the NAR view, a length beam and optional self-reranking.

Every sentence gets l length candidates; all B·l candidates are refined together (sentence-major rows,
padded to the longest candidate), so each iteration is ONE decoder pass for the whole batch. Iteration 1
predicts every inner position; after iteration t the `schedule` says how many tokens to re-mask (the
lowest-probability ones) and iteration t + 1 re-predicts only those, the others keep their tokens and
probabilities. A sentence's output is its candidate with the best mean log-prob, or, with self-reranking,
the best length-normalised log-prob under the model's own AR view (one teacher-forced pass). Optionally,
each run of a repeated token is collapsed to one before the choice (a NAR view's commonest error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from janusgen.data.masking import lowest_scores_mask
from janusgen.decoding.common import (
    Hypotheses,
    banned_tokens,
    length_normalized,
    nar_prefix,
    teacher_forced_log_probs,
    with_bos_eos,
)
from janusgen.model.layout import nar_view
from janusgen.model.transformer import DecoderCache, Encoded, JanusTransformer

# (n (N,) output lengths, t finished iterations, T iterations) -> (N,) number of tokens to re-mask
MaskSchedule = Callable[[torch.Tensor, int, int], torch.Tensor]


def linear_schedule(n: torch.Tensor, t: int, iterations: int) -> torch.Tensor:
    """Mask-Predict's schedule: re-mask ⌊n·(T − t)/T⌋ tokens after iteration t (integer arithmetic, so
    no floating-point rounding can move the floor)."""
    return n * (iterations - t) // iterations


def length_candidates(
    model: JanusTransformer,
    enc: Encoded,
    max_len: torch.Tensor,
    length_beam: int,
    offsets: Sequence[int] | None = None,
) -> torch.Tensor:
    """(B, l) output lengths to try: the top-`length_beam` of the length classifier, or its argmax plus
    each of `offsets`. Kept within [1, max_len] (0 only where max_len is 0): an empty candidate would
    always win by its vacuous mean log-prob of 0."""
    logits = model.length_logits(enc).float()  # (B, M + 1)
    n = torch.arange(logits.shape[1], device=logits.device)[None]  # (1, M + 1)
    lowest = max_len.clamp(max=1)[:, None]  # (B, 1)
    logits = logits.masked_fill((n < lowest) | (n > max_len[:, None]), -math.inf)
    if offsets is None:
        lengths = logits.topk(min(length_beam, logits.shape[1]), dim=1).indices
    else:
        lengths = logits.argmax(dim=1, keepdim=True) + torch.tensor(list(offsets), device=logits.device)
    # a sentence allowed fewer than l lengths repeats one: the same candidate twice is harmless
    return torch.minimum(lengths, max_len[:, None]).maximum(lowest)


@torch.inference_mode()
def refine(
    model: JanusTransformer,
    enc: Encoded,
    lengths: torch.Tensor,
    iterations: int = 10,
    schedule: MaskSchedule = linear_schedule,
    early_stop: bool = False,
) -> Hypotheses:
    """Mask-Predict for N candidates of given `lengths` (N,) (`enc` has N rows, or B rows, each for N / B
    consecutive candidates): log_prob is the sum of the final tokens' P_NAR log-probs, score their mean.
    `early_stop`: stop after a pass that re-predicted every re-masked token as it was (one read from the
    device per pass, to spare the passes left)."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    cfg = model.cfg
    # BOS (after a BART's start token) at positions 0 .. p - 1, the outputs from p on, as in training
    prefix = torch.tensor(nar_prefix(cfg), device=lengths.device)
    p = prefix.shape[0]
    width = (int(lengths.max()) if lengths.numel() else 0) + p + 1
    pos = torch.arange(width, device=lengths.device)[None]  # (1, L)
    inner = (pos >= p) & (pos < p + lengths[:, None])  # (N, L)
    tgt = torch.where(pos == p + lengths[:, None], cfg.eos_id, cfg.pad_id)
    tgt[:, :p] = prefix
    tgt = tgt.masked_fill(inner, cfg.mask_id)  # (N, L)
    token_logp = torch.zeros(tgt.shape, device=lengths.device)  # (N, L) log-prob of each current token
    # inner positions: never pad, <unk>, BOS, EOS or [MASK]
    ban = banned_tokens(model, cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.eos_id, cfg.mask_id)
    masked = inner
    cache = DecoderCache()  # the first pass fills in the encoder keys/values; later passes reuse them
    for t in range(1, iterations + 1):
        if t > 1:
            counts = torch.minimum(schedule(lengths, t - 1, iterations).clamp(min=0), lengths)
            masked = lowest_scores_mask(token_logp, inner, counts)
            if not masked.any():
                continue  # nothing to re-predict in this iteration: skip the pass
            before = tgt[masked] if early_stop else None
            tgt = tgt.masked_fill(masked, cfg.mask_id)
            cache = cache.encoder_only()
        hidden = model.decode(nar_view(tgt, cfg.pad_id), enc, cache)  # (N, L, d)
        # logits only where a token is predicted: the output projection costs about as much as the decoder
        logits = model.logits(hidden[masked]).float()  # (M, V) for the M masked positions, row-major
        normalizer = logits.logsumexp(dim=-1)
        best, token = logits.add_(ban).max(dim=-1)
        unchanged = early_stop and t > 1 and bool((token == before).all())
        tgt[masked] = token
        token_logp[masked] = best - normalizer
        if unchanged:
            break
    tokens = tgt[:, p:-1].masked_fill(~inner[:, p:-1], cfg.pad_id)  # (N, L - p - 1) outputs, no BOS/EOS
    log_prob = token_logp.sum(dim=1)
    return Hypotheses(tokens, lengths, log_prob, log_prob / lengths.clamp(min=1))


@torch.inference_mode()
def rescore_with_ar(
    model: JanusTransformer, enc: Encoded, hyps: Hypotheses, length_penalty: float = 1.0
) -> Hypotheses:
    """The same outputs scored by the model's AR view in one teacher-forced pass: log_prob sums the AR
    log-probs of the tokens and EOS; score = log_prob / (n + 1)^length_penalty, as in beam search."""
    tgt = with_bos_eos(model, hyps.tokens, hyps.lengths)
    log_prob = teacher_forced_log_probs(model, enc, tgt).sum(dim=1)
    score = length_normalized(log_prob, hyps.lengths + 1, length_penalty)
    return Hypotheses(hyps.tokens, hyps.lengths, log_prob, score)


def collapse_repeats(hyps: Hypotheses, pad_id: int) -> Hypotheses:
    """The outputs with each run of one repeated token kept once ("the the earth" -> "the earth"):
    positions filled in the same pass each see [MASK] at their neighbour, so a NAR view often predicts
    the same word twice, the repetition problem of non-autoregressive decoding (Gu et al., 2018).
    log_prob and score stay those of the uncollapsed candidate, the one that was refined."""
    tokens, lengths = hyps.tokens, hyps.lengths
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None]  # (1, T)
    repeat = torch.zeros_like(tokens, dtype=torch.bool)
    repeat[:, 1:] = tokens[:, 1:] == tokens[:, :-1]
    keep = (pos < lengths[:, None]) & ~repeat  # (N, T)
    # a stable sort on "dropped" moves the kept tokens to the front, in their order
    order = (~keep).to(torch.uint8).sort(dim=1, stable=True).indices
    kept = keep.sum(dim=1)
    collapsed = tokens.gather(1, order).masked_fill(pos >= kept[:, None], pad_id)
    return Hypotheses(collapsed, kept, hyps.log_prob, hyps.score)


def best_candidates(hyps: Hypotheses, num_sentences: int) -> Hypotheses:
    """Per sentence, the candidate with the highest score; `hyps` holds l candidates per sentence,
    sentence-major (B·l rows)."""
    per = hyps.score.shape[0] // num_sentences
    best = hyps.score.view(num_sentences, per).argmax(dim=1)  # (B,)
    rows = torch.arange(num_sentences, device=best.device) * per + best
    return Hypotheses(hyps.tokens[rows], hyps.lengths[rows], hyps.log_prob[rows], hyps.score[rows])


@torch.inference_mode()
def mask_predict(
    model: JanusTransformer,
    enc: Encoded,
    max_len: torch.Tensor,
    iterations: int,
    length_beam: int,
    length_offsets: Sequence[int] | None = None,
    rerank: bool = False,
    schedule: MaskSchedule = linear_schedule,
    length_penalty: float = 1.0,
    collapse: bool = False,
    early_stop: bool = False,
) -> Hypotheses:
    """Mask-Predict with a length beam for encoded sources; `max_len` (B,) caps each output's length.
    Without `rerank` the scores are the NAR ones (sum / mean log-prob); with it, the AR ones, of the
    collapsed candidates if `collapse` (see collapse_repeats). The options are DecodeConfig's, checked
    there (`decoding.api.decode` passes them on)."""
    b = enc.states.shape[0]
    lengths = length_candidates(model, enc, max_len, length_beam, length_offsets)  # (B, l)
    # the B·l candidates are sentence-major: a sentence's l rows share its row of enc (see DecoderLayer)
    hyps = refine(model, enc, lengths.view(-1), iterations, schedule, early_stop)  # (B·l) candidates
    if collapse:
        hyps = collapse_repeats(hyps, model.cfg.pad_id)
    if rerank:
        hyps = rescore_with_ar(model, enc, hyps, length_penalty)
    return best_candidates(hyps, b)
