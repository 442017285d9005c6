"""Fixtures of the decoding tests: tiny random models, random source batches, and a tiny model overfit
on a few pairs for the tests that need meaningful outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
import torch

from janusgen.model.transformer import JanusTransformer
from janusgen.objectives import JanusObjective
from janusgen.presets import model_preset, objective_preset

VOCAB = 50


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and then do not fight parallel jobs for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with _one_thread():
        yield


@pytest.fixture
def random_model() -> Callable[..., JanusTransformer]:
    """random_model(seed=0, eos_ramp=0.0, **config_changes): a randomly initialised tiny model in eval
    mode. A random model never picks EOS; `eos_ramp` > 0 adds eos_ramp·p·(EOS embedding direction) to
    the decoder position embedding of every position p, so that EOS grows likelier along the output and
    outputs end at varied lengths (0.3: mostly after 11 to 18 tokens)."""

    def make(seed: int = 0, eos_ramp: float = 0.0, **changes: object) -> JanusTransformer:
        torch.manual_seed(seed)
        cfg = dataclasses.replace(model_preset("tiny"), vocab_size=VOCAB, **changes)
        model = JanusTransformer(cfg).eval()
        with torch.no_grad():
            eos = model.embed.weight[cfg.eos_id]
            positions = torch.arange(model.dec_positions.weight.shape[0], dtype=torch.float)[:, None]
            model.dec_positions.weight += eos_ramp * positions * eos / eos.norm()
            model.relative_bias.weight.normal_()  # trained models have one; zero would hide cache bugs
        return model

    return make


def make_sources(
    lengths: list[int], seed: int = 0, vocab: int = VOCAB, pad: int = 0, eos: int = 3
) -> torch.Tensor:
    """(B, S) sources: `lengths[b]` random ordinary tokens, then EOS, right-padded."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths) + 1), pad)
    for b, n in enumerate(lengths):
        src[b, :n] = torch.randint(5, vocab, (n,), generator=g)
        src[b, n] = eos
    return src


@pytest.fixture
def sources() -> Callable[..., torch.Tensor]:
    """sources(lengths, seed=0): see make_sources."""
    return make_sources


class Overfit(NamedTuple):
    model: JanusTransformer
    src: torch.Tensor  # (B, S)
    references: list[list[int]]  # the memorised outputs, without BOS/EOS


@pytest.fixture(scope="session")
def overfit() -> Overfit:
    """A tiny model trained with the JANUS loss (no label smoothing, so it becomes confident) until it
    has memorised six pairs (target = source reversed, each id shifted by one); about a second."""
    vocab, pad, bos, eos = 24, 0, 2, 3
    src = make_sources([3, 5, 7, 4, 6, 8], seed=0, vocab=vocab)
    references = [[(x - 4) % (vocab - 5) + 5 for x in reversed(row[row > eos].tolist())] for row in src]
    longest = max(map(len, references))
    tgt = torch.tensor([[bos, *r, eos] + [pad] * (longest - len(r)) for r in references])
    with _one_thread():
        torch.manual_seed(0)
        cfg = dataclasses.replace(model_preset("tiny"), vocab_size=vocab, d_model=48, ffn_dim=96)
        model = JanusTransformer(cfg)
        objective = JanusObjective(dataclasses.replace(objective_preset("janus"), label_smoothing=0.0))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(250):
            optimizer.zero_grad()
            objective(model, src, tgt).loss.backward()
            optimizer.step()
    return Overfit(model.eval(), src, references)
