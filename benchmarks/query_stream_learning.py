"""How fast the AR view learns: a standard causal decoder (content row i predicts token i+1) against
the JANUS query stream ([MASK] + position, attending to earlier content), with and without the
relative-position bias and its local initialisation. Same model, data order, seed and optimiser;
prints the label-smoothed training loss every 25 updates.

    python benchmarks/query_stream_learning.py --data work/bible_data --view query --bias local
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from janusgen.data.batching import PairBatches
from janusgen.data.dataset import PairDataset
from janusgen.losses import label_smoothed_ce
from janusgen.model.layout import ar_view, content_only_ar_view
from janusgen.model.transformer import JanusTransformer
from janusgen.presets import model_preset
from janusgen.training.config import TrainConfig
from janusgen.training.optim import build_optimizer, inverse_sqrt_lr, set_lr


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--view", choices=["standard", "query"], required=True)
    parser.add_argument(
        "--bias",
        choices=["none", "zero", "local"],
        default="local",
        help="relative-position bias: absent, zero-initialised, or local (the default model)",
    )
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--max-tokens", type=int, default=2048)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = PairDataset.open(args.data, "train")
    cfg = dataclasses.replace(
        model_preset("small"),
        vocab_size=data.tokenizer.vocab_size,
        dropout=0.0,
        relative_positions=0 if args.bias == "none" else 32,
    )
    batches = PairBatches(data, cfg, args.max_tokens, 1, True)
    model = JanusTransformer(cfg)
    if args.bias == "zero":
        torch.nn.init.zeros_(model.relative_bias.weight)
    train_cfg = TrainConfig(lr=2e-3, warmup_updates=100)
    optimizer = build_optimizer(model, train_cfg)
    stream = iter(batches.sampler)
    start = time.perf_counter()
    for step in range(1, args.updates + 1):
        batch = batches.collate(next(stream).indices)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            enc = model.encode(batch.src)
            if args.view == "standard":
                view = content_only_ar_view(batch.tgt, cfg.pad_id)
                hidden = model.decode(view, enc)
            else:
                view = ar_view(batch.tgt, cfg.pad_id, cfg.mask_id)
                hidden = model.decode(view, enc)[:, view.num_content :]
            loss = label_smoothed_ce(
                model.logits(hidden), batch.tgt[:, 1:], batch.tgt[:, 1:] != cfg.pad_id, 0.1
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        set_lr(optimizer, inverse_sqrt_lr(step, train_cfg))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0:
            print(
                f"{args.view:8s} bias={args.bias:5s} update {step:4d}  loss {loss.item():.3f}  "
                f"{time.perf_counter() - start:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
