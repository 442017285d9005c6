"""The entry points the rest of the package calls: source ids in, token-id lists (and scores) out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from janusgen.config import DecodeConfig
from janusgen.decoding.common import Decoded, check_inputs, max_output_lengths
from janusgen.decoding.mask_predict import MaskSchedule, linear_schedule, mask_predict
from janusgen.decoding.search import beam_search, greedy_search
from janusgen.decoding.speculative import DEFAULT_BLOCK, SpeculativeStats, speculative_search
from janusgen.model.transformer import JanusTransformer

_D = DecodeConfig()  # the defaults live in config.py


@torch.inference_mode()
def decode_ar(
    model: JanusTransformer,
    src: torch.Tensor,
    beam: int = _D.beam,
    max_len_a: float = _D.max_len_a,
    max_len_b: int = _D.max_len_b,
    length_penalty: float = _D.length_penalty,
) -> Decoded:
    """Autoregressive decoding of `src` (B, S) (ids + EOS, right-padded): beam search, or greedy for
    beam = 1. At most ⌊a·|x| + b⌋ output tokens per sentence. Scores: `log_probs` sums the log-probs of
    the output and EOS; `scores` divides it by (n + 1)^length_penalty, which beam search ranks by."""
    if src.dim() == 2 and src.shape[0] == 0:
        return Decoded([], [], [])
    enc = check_inputs(model, src)
    max_len = max_output_lengths(model, src, max_len_a, max_len_b)
    if beam == 1:
        return Decoded.of(greedy_search(model, enc, max_len, length_penalty))
    return Decoded.of(beam_search(model, enc, max_len, beam, length_penalty))


@torch.inference_mode()
def decode_nar(
    model: JanusTransformer,
    src: torch.Tensor,
    iterations: int = _D.iterations,
    length_beam: int = _D.length_beam,
    length_offsets: Sequence[int] | None = None,
    rerank: bool = False,
    schedule: MaskSchedule = linear_schedule,
    max_len_a: float = _D.max_len_a,
    max_len_b: int = _D.max_len_b,
    length_penalty: float = _D.length_penalty,
    collapse_repeats: bool = _D.collapse_repeats,
    early_stop: bool = _D.early_stop,
) -> Decoded:
    """Mask-Predict decoding of `src` (B, S) with `iterations` refinement passes and a length beam: the
    top-`length_beam` predicted lengths, or, given `length_offsets`, the predicted length plus each
    offset. Keeps the candidate with the best mean NAR log-prob, or with `rerank` the best AR
    log-prob / (n + 1)^length_penalty; the returned scores are those it was chosen by.
    `collapse_repeats`: each run of a repeated token is kept once, before the AR view reranks.
    `early_stop`: refinement stops once a pass changes no token."""
    if src.dim() == 2 and src.shape[0] == 0:
        return Decoded([], [], [])
    enc = check_inputs(model, src)
    max_len = max_output_lengths(model, src, max_len_a, max_len_b)
    hyps = mask_predict(
        model,
        enc,
        max_len,
        iterations,
        length_beam,
        length_offsets,
        rerank,
        schedule,
        length_penalty,
        collapse=collapse_repeats,
        early_stop=early_stop,
    )
    return Decoded.of(hyps)


@torch.inference_mode()
def decode_speculative(
    model: JanusTransformer,
    src: torch.Tensor,
    max_len_a: float = _D.max_len_a,
    max_len_b: int = _D.max_len_b,
    length_penalty: float = _D.length_penalty,
    drafting: str = "keep",
    block: int | None = DEFAULT_BLOCK,
) -> Decoded:
    """Self-speculative decoding of `src` (B, S): the NAR view drafts, the AR view verifies. The outputs
    and scores are those of `decode_ar(..., beam=1)`, up to floating-point near-ties (where the two best
    tokens are within rounding error, either may be chosen: `decoding.speculative`); `stats` counts the
    rounds and emitted tokens.
    `drafting`: how drafts are made, one of `speculative.DRAFTINGS`; `block`: the most draft tokens
    verified a round (None: all the rest of the draft)."""
    if src.dim() == 2 and src.shape[0] == 0:
        return Decoded([], [], [], SpeculativeStats())
    enc = check_inputs(model, src)
    max_len = max_output_lengths(model, src, max_len_a, max_len_b)
    return Decoded.of(*speculative_search(model, enc, max_len, length_penalty, drafting, block))
