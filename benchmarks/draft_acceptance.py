"""How good a checkpoint's NAR view is as a drafter for speculative decoding, without timing anything.

For every prefix of AR greedy's output (BOS and its first t tokens, t = 0 .. m) the NAR view drafts the
rest in one pass, as `speculative_search` does, and AR greedy's own next tokens say how many leading
draft tokens of a block it would accept. Variants: the predicted length (what decoding uses) or the
oracle one (the length of AR greedy's output), and the draft refined by `--aux-passes` passes of the
AUX view (each placeholder re-predicted from the prefix, the draft before it and the placeholders after
it: the query stream of the JANUS training view), or with `--tree-top-k` any of the NAR view's top k
at each position (the bound for verifying a tree of candidates). Reported per variant: the mean
accepted draft tokens over all prefixes, P(first draft token right), P(second right | first right), and
the tokens per round along AR greedy's path when every round drafts afresh (`drafting="every_round"`
with the predicted length emits exactly these).

    python benchmarks/draft_acceptance.py --checkpoint runs/janus/best --data work/bible_data --limit 120
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch

from janusgen.config import DecodeConfig
from janusgen.data.batching import pad_sequences
from janusgen.data.dataset import PairDataset
from janusgen.decoding import decode
from janusgen.decoding.common import banned_tokens, max_output_lengths
from janusgen.decoding.mask_predict import length_candidates
from janusgen.decoding.speculative import DEFAULT_BLOCK
from janusgen.decoding.translator import Translator
from janusgen.model.layout import draft_input, masked_view, nar_view
from janusgen.model.transformer import Encoded, JanusTransformer


def drafts(
    model: JanusTransformer,
    enc: Encoded,
    seq: torch.Tensor,
    t: torch.Tensor,
    n: torch.Tensor,
    aux_passes: int,
    top_k: int,
) -> list[torch.Tensor]:
    """Drafts for prefixes `seq` (P, .) up to `t` (P,) with last draft position `n` (P,), after 0 ..
    `aux_passes` AUX passes: entry a (P, W, top_k) holds at every placeholder the top_k (argmax first) of
    the NAR view (a = 0) or of the AUX view after a passes, each re-predicting all placeholders from the
    argmax draft before it; elsewhere the input token."""
    cfg = model.cfg
    ban = banned_tokens(model, cfg.pad_id, cfg.unk_id, cfg.bos_id, cfg.eos_id, cfg.mask_id)
    tokens, placeholder = draft_input(seq, t, n, cfg.pad_id, cfg.mask_id, cfg.eos_id)
    hidden = model.decode(nar_view(tokens, cfg.pad_id), enc)
    logits = model.logits(hidden[placeholder]).float() + ban  # (M, V), the placeholders row-major
    k = int(placeholder.sum(dim=1).max())
    # masked_view's query rows come last, one per placeholder in position order (valid ones first)
    order = torch.where(placeholder, torch.arange(tokens.shape[1]), tokens.shape[1]).sort(dim=1).values[:, :k]
    valid = order < tokens.shape[1]
    out = []
    for a in range(aux_passes + 1):
        if a > 0:
            tokens[placeholder] = logits.argmax(dim=-1)
            hidden = model.decode(masked_view(tokens, placeholder, cfg.pad_id, cfg.mask_id), enc)
            logits = (model.logits(hidden[:, -k:]).float() + ban)[valid]
        candidates = tokens[:, :, None].repeat(1, 1, top_k)
        candidates[placeholder] = logits.topk(top_k, dim=-1).indices
        out.append(candidates)
    return out


def accepted(
    candidates: torch.Tensor, seq: torch.Tensor, t: torch.Tensor, n: torch.Tensor, limit: int, block: int
) -> torch.Tensor:
    """(P,) leading draft positions AR greedy (`seq`: BOS, its output, EOS) accepts after each prefix t,
    of at most min(n + 1, limit) - t verified, clipped to `block` (as in `speculative_search`); `candidates`
    (P, W, k) holds k candidates a position, and a position is accepted where one of them is AR's."""
    k = (torch.minimum(n + 1, torch.tensor(limit)) - t).clamp(min=0, max=block)
    i = torch.arange(block)[None]
    p = t[:, None] + 1 + i  # (P, block) positions of the verified draft tokens
    last = seq.shape[0] - 1
    at = p.clamp(max=candidates.shape[1] - 1)[:, :, None].expand(-1, -1, candidates.shape[2])
    agree = (candidates.gather(1, at) == seq[p.clamp(max=last)][:, :, None]).any(dim=2) & (p <= last)
    return (agree & (i < k[:, None])).long().cumprod(dim=1).sum(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=120, help="first N sentences (default %(default)s)")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK)
    parser.add_argument("--aux-passes", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--tree-top-k",
        type=int,
        nargs="+",
        default=[2, 3],
        help="also count a position as accepted where AR's token is among the NAR view's top k: the bound "
        "for verifying a tree of the top k at each position of the block (k^block paths)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    translator = Translator.load(args.checkpoint, dtype="float32")
    tok, model, cfg = translator.tokenizer, translator.model, translator.model.cfg
    defaults = DecodeConfig()
    # (length, AUX passes, candidates a position)
    variants = [("predicted", a, 1) for a in args.aux_passes] + [("oracle", 0, 1)]
    variants += [("predicted", 0, k) for k in args.tree_top_k if k > 1]
    counts = {v: torch.zeros(args.block + 1) for v in variants}  # over prefixes: how many accepted
    second = {v: [0, 0] for v in variants}  # prefixes with the first right, and of those the second too
    path = {v: [0, 0] for v in variants}  # along greedy's path, drafting afresh each round: rounds, tokens
    texts = PairDataset.open(args.data, args.split).texts()[0][: args.limit]
    with torch.inference_mode():
        for ids in tok.encode(texts):
            src = pad_sequences([ids], tok.pad_id, suffix=tok.eos_id)
            output = decode(model, src, DecodeConfig(beam=1)).tokens[0]
            m = len(output)
            seq = torch.tensor([cfg.bos_id, *output, cfg.eos_id])
            enc = model.encode(src)
            limit = int(max_output_lengths(model, src, defaults.max_len_a, defaults.max_len_b)[0])
            predicted = int(length_candidates(model, enc, torch.tensor([limit]), length_beam=1)[0, 0])
            t = torch.arange(m + 1)  # every prefix s_0 .. s_t
            enc = enc.index_select(torch.zeros(m + 1, dtype=torch.long))
            for length_name, length in (("predicted", predicted), ("oracle", m)):
                wanted = [v for v in variants if v[0] == length_name]
                n = torch.full_like(t, length).maximum(t + 1).minimum(torch.tensor(limit))
                prefixes = torch.cat([seq, torch.full((int(n.max()) + 2,), cfg.pad_id)]).expand(m + 1, -1)
                # one draft serves every variant of this length: the top k are the first k of the top k'
                by_passes = drafts(
                    model, enc, prefixes, t, n, max(v[1] for v in wanted), max(v[2] for v in wanted)
                )
                for variant in wanted:
                    j = accepted(by_passes[variant[1]][:, :, : variant[2]], seq, t, n, limit, args.block)
                    counts[variant] += torch.bincount(j, minlength=args.block + 1).float()
                    second[variant][0] += int((j >= 1).sum())
                    second[variant][1] += int((j >= 2).sum())
                    at = 0
                    while at <= m:  # the rounds of `drafting="every_round"`: each emits j + 1 tokens
                        path[variant][0] += 1
                        path[variant][1] += min(int(j[at]) + 1, m + 1 - at)
                        at += int(j[at]) + 1
    report = {
        "checkpoint": str(args.checkpoint),
        "sentences": len(texts),
        "date": datetime.date.today().isoformat(),
        "block": args.block,
    }
    for variant in variants:
        c = counts[variant]
        name = f"{variant[0]} length, {variant[1]} AUX passes"
        if variant[2] > 1:
            name += f", a tree of the top {variant[2]}"
        report[name] = {
            "mean_accepted_per_prefix": round(float((c * torch.arange(args.block + 1)).sum() / c.sum()), 3),
            "p_first_right": round(float(1 - c[0] / c.sum()), 3),
            "p_second_right_given_first": round(second[variant][1] / max(second[variant][0], 1), 3),
            "tokens_per_round_drafting_every_round": round(path[variant][1] / path[variant][0], 3),
        }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
