"""The AR view's incremental step, as a search calls it: the next token's log-probs for every decoder
row, with the key/value cache behind it; eager, or compiled with static shapes (`DecodeConfig.compile`).

A decoding step of a small model at batch 1 is some 130 small operations whose cost is per call, not
arithmetic (docs/experiments/2026-12-07-cpu-decoding.md). Compiled by inductor with frozen weights and
its own matmul kernels, the step is one C++ call; for that every tensor keeps one shape for the whole
search: the cache is static (model/cache.py), the batch is rounded up to a power of two (the rows past
the real ones are computed and ignored), and a finished sentence's rows are moved out of the way rather
than dropped. The source length and the cache's capacity may vary without a recompile; a new batch
size (a new power of two, a new beam) compiles once, in 15-50 s (the autotuning times each matmul).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from janusgen.decoding.common import DecoderPrefix, prime_cache
from janusgen.model.cache import LayerCache
from janusgen.model.transformer import DecoderCache, Encoded, JanusTransformer

# inductor's settings for the step: weights frozen into the graph (prepacked once), matmuls from its
# C++ templates where they beat oneDNN / MKL (chosen by timing each at compile time), no Python between
# operations. The tests swap in lighter settings (they check shapes and outputs, not speed).
COMPILE_OPTIONS: dict[str, Any] = {"freezing": True, "max_autotune": True, "cpp_wrapper": True}
RECOMPILE_LIMIT = 64  # batch sizes (powers of two) x beams x models in one process
MIN_TORCH = (2, 6)  # inductor's C++ matmul templates and freezing on the CPU (measured on 2.13)
COMPILE_SUPPORTED = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= MIN_TORCH


def ar_log_probs(
    model: JanusTransformer, enc: Encoded, cache: DecoderCache, last: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """(rows, V) float32 log P_AR of the token after `last` (rows,), the tokens at positions[0]; the
    cache gets their content entries."""
    view = model.ar_step_view(last, positions)
    hidden = model.decode(view, enc, cache)
    return F.log_softmax(model.logits(model.ar_rows(view, hidden)[:, 0]).float(), dim=-1)


class ArStep:
    """Eager: the cache grows by one entry a step, finished sentences leave the batch."""

    def __init__(
        self, model: JanusTransformer, enc: Encoded, prefix: DecoderPrefix, width: int, steps: int
    ) -> None:
        """`width` decoder rows per sentence of `enc` (a beam); `steps`: the most steps the search runs."""
        self.model, self.enc = model, enc
        self.cache = DecoderCache(capacity=len(prefix.tokens) + steps)  # room for every entry up front
        prime_cache(model, enc, prefix, self.cache, width)  # a BART's start token before BOS

    def __call__(self, last: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return ar_log_probs(self.model, self.enc, self.cache, last, positions)

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None) -> None:
        """Row i continues the old row rows[i] (a beam's choice); `sentences`: the sentences kept, when
        some finished (None: all)."""
        if sentences is not None:
            self.enc = self.enc.index_select(sentences)
        self.cache.reorder(rows, sentences)


class CompiledArStep(ArStep):
    """The same step compiled, over static shapes (see the module docstring)."""

    def __init__(
        self, model: JanusTransformer, enc: Encoded, prefix: DecoderPrefix, width: int, steps: int
    ) -> None:
        self.model = model
        batch = enc.states.shape[0]
        bucket = 1 << max(batch - 1, 0).bit_length()  # the batch rounded up to a power of two
        states = F.pad(enc.states, (0, 0, 0, 0, 0, bucket - batch))
        valid = F.pad(enc.valid, (0, 0, 0, bucket - batch), value=True)  # no row without a key
        self.enc = Encoded(states, valid, padded=True)  # always a key mask: one graph for every batch
        self.rows = bucket * width
        capacity = len(prefix.tokens) + steps
        cfg = model.cfg
        heads, head_dim = cfg.heads, cfg.d_model // cfg.heads
        self.cache = DecoderCache(capacity=capacity, static=True)
        self.cache.positions = torch.arange(capacity, device=states.device)[None]
        for layer in model.decoder_layers:
            k, v = (  # zeros: the entries not written yet are masked, and must not be NaN
                states.new_zeros(self.rows, heads, capacity, head_dim) for _ in range(2)
            )
            cross_k, cross_v = layer.cross_attn.project_kv(states)
            spare_k, spare_v = torch.zeros_like(k), torch.zeros_like(v)
            self.cache.layers.append(LayerCache(k, v, cross_k, cross_v, spare_k, spare_v))
        for tensor in [self.cache.positions, states, valid]:
            torch._dynamo.maybe_mark_dynamic(tensor, 1)  # source length and capacity vary freely
        for layer_cache in self.cache.layers:
            for tensor in [layer_cache.self_k, layer_cache.self_v, layer_cache.cross_k, layer_cache.cross_v]:
                torch._dynamo.maybe_mark_dynamic(tensor, 2)
        # the prefix (a BART's start token before BOS) as steps, then the search's first step, here so
        # that a failure to compile falls back to the eager step before the search begins
        positions = torch.arange(capacity + 1, device=states.device)
        for p, token in enumerate(prefix.tokens):
            first = self._run(torch.full((self.rows,), token, device=states.device), positions[p : p + 2])
        self._first: torch.Tensor | None = first

    def __call__(self, last: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self._first is not None:  # the search's first step, computed already
            first, self._first = self._first, None
            return first[: last.shape[0]]
        return self._run(last, positions)

    def _run(self, last: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        rows = last.shape[0]
        if rows < self.rows:  # the rows of finished sentences and of the rounding: any token will do
            last = F.pad(last, (0, self.rows - rows), value=self.model.cfg.eos_id)
        # inductor reads some settings (freezing) outside torch.compile's `options`: patched per call,
        # which leaves the process's own settings (a training run's compile) as they are
        with torch._inductor.config.patch(COMPILE_OPTIONS):
            return _compiled(self.model)(self.enc, self.cache, last, positions)[:rows]

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None) -> None:
        if sentences is not None:  # into the first rows; the static key mask keeps its shape
            self.enc.valid[: sentences.shape[0]] = self.enc.valid.index_select(0, sentences)
        self.cache.reorder(rows, sentences)


def _compiled(model: JanusTransformer) -> Any:
    """`ar_log_probs` of `model` compiled: the model is a constant of the graph (not an argument), so
    that inductor can freeze its weights; made once per model and kept on it."""
    compiled = model.__dict__.get("_compiled_ar_step")
    if compiled is None:
        if not COMPILE_SUPPORTED:
            raise RuntimeError(
                f"needs PyTorch {'.'.join(map(str, MIN_TORCH))} or later, not {torch.__version__}"
            )
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))

        def step(
            enc: Encoded, cache: DecoderCache, last: torch.Tensor, positions: torch.Tensor
        ) -> torch.Tensor:
            return ar_log_probs(model, enc, cache, last, positions)

        # its weights frozen into the graph, the model is constant: no guards on its modules (a few
        # hundred checks a step otherwise)
        skip = getattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe", None)
        options = {} if skip is None else {"guard_filter_fn": skip}
        compiled = torch.compile(step, fullgraph=True, options=options)
        model.__dict__["_compiled_ar_step"] = compiled
    return compiled


def ar_step(
    model: JanusTransformer, enc: Encoded, prefix: DecoderPrefix, width: int, steps: int, compiled: bool
) -> ArStep:
    """The step a search runs: compiled where asked and possible (a C++ compiler for inductor), else
    eager, with a warning saying why."""
    if compiled:
        try:
            return CompiledArStep(model, enc, prefix, width, steps)
        except Exception as e:  # no compiler, an unsupported model or device: the eager step still works
            if not _WARNED:
                _WARNED.append(str(e))
                warnings.warn(f"--compile: the compiled step failed ({e}); decoding without it", stacklevel=2)
    return ArStep(model, enc, prefix, width, steps)


_WARNED: list[str] = []
