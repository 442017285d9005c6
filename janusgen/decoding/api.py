"""The entry point the rest of the package calls: source ids and a DecodeConfig in, token-id lists (and
scores) out."""

from __future__ import annotations

import torch

from janusgen.config import DecodeConfig
from janusgen.decoding.common import Decoded, check_inputs, max_output_lengths
from janusgen.decoding.mask_predict import MaskSchedule, linear_schedule, mask_predict
from janusgen.decoding.search import beam_search, greedy_search
from janusgen.decoding.speculative import DEFAULT_BLOCK, SpeculativeStats, speculative_search
from janusgen.model.transformer import JanusTransformer


@torch.inference_mode()
def decode(
    model: JanusTransformer,
    src: torch.Tensor,
    cfg: DecodeConfig,
    *,
    schedule: MaskSchedule = linear_schedule,
    drafting: str = "keep",
    block: int | None = DEFAULT_BLOCK,
) -> Decoded:
    """Decode `src` (B, S) (ids + EOS, right-padded) as `cfg` says; at most ⌊a·|x| + b⌋ output tokens
    per sentence (cfg.max_len_a, cfg.max_len_b). cfg.max_tokens is the caller's batching budget.

    - mode "ar": beam search, or greedy for beam = 1. `log_probs` sums the log-probs of the output and
      EOS; `scores` divides it by (n + 1)^length_penalty, which beam search ranks by.
    - mode "nar": Mask-Predict with `iterations` refinement passes, the re-masking `schedule`, and a
      length beam: the top-`length_beam` predicted lengths, or, given `length_offsets`, the predicted
      length plus each offset. Keeps the candidate with the best mean NAR log-prob, or with `rerank` the
      best AR log-prob / (n + 1)^length_penalty; the returned scores are those it was chosen by.
      `collapse_repeats`: each run of a repeated token is kept once, before the AR view reranks;
      `early_stop`: refinement stops once a pass changes no token.
    - mode "speculative": the NAR view drafts, the AR view verifies. The outputs and scores are those of
      AR greedy, up to floating-point near-ties (where the two best tokens are within rounding error,
      either may be chosen: `decoding.speculative`); `stats` counts the rounds and emitted tokens.
      `drafting`: how drafts are made, one of `speculative.DRAFTINGS`; `block`: the most draft tokens
      verified a round (None: all the rest of the draft).
    """
    if src.dim() == 2 and src.shape[0] == 0:
        return Decoded([], [], [], SpeculativeStats() if cfg.mode == "speculative" else None)
    enc = check_inputs(model, src)
    max_len = max_output_lengths(model, src, cfg.max_len_a, cfg.max_len_b)
    if cfg.mode == "speculative":
        return Decoded.of(*speculative_search(model, enc, max_len, cfg.length_penalty, drafting, block))
    if cfg.mode == "nar":
        hyps = mask_predict(
            model,
            enc,
            max_len,
            cfg.iterations,
            cfg.length_beam,
            cfg.length_offsets,
            cfg.rerank,
            schedule,
            cfg.length_penalty,
            collapse=cfg.collapse_repeats,
            early_stop=cfg.early_stop,
        )
        return Decoded.of(hyps)
    if cfg.beam == 1:
        return Decoded.of(greedy_search(model, enc, max_len, cfg.length_penalty, cfg.compile))
    return Decoded.of(beam_search(model, enc, max_len, cfg.beam, cfg.length_penalty, cfg.compile))
