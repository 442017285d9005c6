"""The Python API: load a checkpoint (a folder or a Hugging Face Hub repo id), generate text in either mode.

    from janusgen import Translator
    translator = Translator.from_pretrained("runs/demo/best")  # or "owner/name" on the Hub
    translator.generate(["En el principio creó Dios los cielos y la tierra."], mode="nar", iterations=4)

Inputs are batched by a token budget (sorted by length, so padding is small) and outputs come back in
input order. An empty input gives an empty output; an input longer than the model's maximum is
truncated with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from janusgen.checkpoint import load_model
from janusgen.config import DecodeConfig, decode_config, from_dict
from janusgen.data.batching import pack_by_tokens, pad_sequences
from janusgen.data.tokenizer_base import TextTokenizer
from janusgen.decoding.api import decode
from janusgen.decoding.speculative import SpeculativeStats
from janusgen.errors import JanusError
from janusgen.hardware import check_device, resolve_precision
from janusgen.hub import COMMIT_MESSAGE, push_to_hub, resolve_checkpoint
from janusgen.model.inference import prepare_for_inference
from janusgen.model.transformer import JanusTransformer
from janusgen.objective_config import ObjectiveConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Generation:
    text: str
    score: float  # the length-normalised log-prob the output was chosen by
    tokens: int  # output tokens (EOS excluded)


class Translator:
    def __init__(
        self,
        model: JanusTransformer,
        tokenizer: TextTokenizer,
        config: dict[str, Any] | None = None,
        source: str = "the model",
        folder: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or {}
        self.source = source  # what errors call it: the checkpoint folder or Hub repo id
        self.folder = folder  # the checkpoint folder it was loaded from (None: built in Python)
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        *,
        local_files_only: bool = False,
        device: str = "auto",
        dtype: str = "float32",
        quantize: str = "none",
    ) -> Translator:
        """`load` a checkpoint folder or a Hugging Face Hub repo id ("owner/name", at `revision`),
        downloaded into the Hugging Face cache or, offline (HF_HUB_OFFLINE=1 or `local_files_only`), read
        from it (janusgen/hub.py)."""
        folder = resolve_checkpoint(name_or_path, revision, local_files_only=local_files_only)
        translator = cls.load(folder, device, dtype, quantize)
        translator.source = str(name_or_path)
        return translator

    @classmethod
    def load(
        cls, checkpoint: str | Path, device: str = "auto", dtype: str = "float32", quantize: str = "none"
    ) -> Translator:
        """Load a checkpoint folder (weights, config, vocabulary) onto `device` (auto: a GPU when there is
        one, else the CPU; cpu; cuda; cuda:N) in `dtype`, made ready for decoding (model/inference.py);
        `quantize="int8"`: int8 weights for every Linear layer (CPU, float32)."""
        if dtype not in DTYPES and dtype != "auto":
            raise JanusError(f"--dtype {dtype!r}: choose auto or one of {', '.join(DTYPES)}")
        where = check_device(device)
        model, tokenizer, config = load_model(Path(checkpoint), where)
        if dtype == "auto":  # the training rule (janusgen.hardware), at the model's shapes
            cfg = model.cfg
            torch_dtype = resolve_precision("auto", where, cfg.d_model, cfg.ffn_dim, rows=256).dtype
        else:
            torch_dtype = DTYPES[dtype]
        if quantize != "none" and where.type != "cpu":
            raise JanusError(f"--quantize {quantize}: int8 decoding runs on the CPU; add --device cpu")
        if quantize != "none" and dtype == "auto":
            torch_dtype = torch.float32  # int8 weights, float32 activations
        model = prepare_for_inference(model.to(torch_dtype), quantize)
        return cls(model, tokenizer, config, source=str(checkpoint), folder=Path(checkpoint))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        commit_message: str = COMMIT_MESSAGE,
    ) -> str:
        """Upload the checkpoint folder this translator was loaded from (as it is on disk: not a cast or
        quantized copy) to the Hub repo `repo_id` (janusgen.hub.push_to_hub); returns the commit's URL."""
        if self.folder is None:
            raise JanusError(
                "push_to_hub: this Translator was not loaded from a checkpoint folder; save one "
                "(janusgen.checkpoint.save_checkpoint) and push that"
            )
        return push_to_hub(self.folder, repo_id, private=private, token=token, commit_message=commit_message)

    def generate(
        self,
        texts: list[str],
        *,
        return_scores: bool = False,
        stats: SpeculativeStats | None = None,
        **options: Any,
    ) -> list[str] | list[tuple[str, float]]:
        """Generate one output per input text. `options`: DecodeConfig fields (their defaults where not
        given), e.g. mode="ar" (beam search; beam=1 is greedy), mode="nar" (Mask-Predict, iterations=4)
        or mode="speculative" (the NAR view drafts, the AR view verifies: exactly the AR greedy output,
        faster where the two views agree; `stats`, if given, accumulates its rounds and tokens)."""
        cfg = decode_config(**options)
        results = self.generate_batch(texts, cfg, stats)
        if return_scores:
            return [(r.text, r.score) for r in results]
        return [r.text for r in results]

    def check_views(self, cfg: DecodeConfig) -> None:
        """Refuse decoding with a view that the checkpoint's objective never trained (NAR of an `ar`
        model, AR or reranking of a `cmlm` one): its outputs would be noise. Speculative decoding of an
        `ar` model is allowed: its output is exactly AR greedy's, whatever the NAR draft."""
        saved = self.config.get("objective")
        if not isinstance(saved, dict):
            return  # a converted model, or a model built in Python: nothing says what it learnt
        objective = from_dict(ObjectiveConfig, saved, where=f"{self.source}/config.json")
        untrained = [
            (view, option)
            for view, option, used, trained in (
                ("AR", f"--mode {cfg.mode}", cfg.mode in ("ar", "speculative"), objective.trains_ar),
                ("AR", "--rerank", cfg.mode == "nar" and cfg.rerank, objective.trains_ar),
                ("NAR", f"--mode {cfg.mode}", cfg.mode == "nar", objective.trains_nar),
            )
            if used and not trained
        ]
        if untrained:
            view, option = untrained[0]
            other = "--mode nar without --rerank" if view == "AR" else "--mode ar"
            raise JanusError(
                f"{option}: {self.source} was trained with the {objective.name} objective, which never "
                f"trains the {view} view: its outputs would be noise; use {other}"
            )

    def generate_batch(
        self,
        texts: list[str],
        cfg: DecodeConfig,
        stats: SpeculativeStats | None = None,
        first_line: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Generation]:
        """One Generation per text, in input order; `stats` accumulates speculative decoding's counts.
        `first_line`: the line number of texts[0] in the input, for warnings (else they count from 1).
        `on_batch(n)` is called as each batch of n texts is decoded (a progress bar)."""
        self.check_views(cfg)
        ids = self.tokenizer.encode([t.strip() for t in texts])
        limit = self.model.cfg.max_positions - 1  # room for EOS
        too_long = [i for i, seq in enumerate(ids) if len(seq) > limit]
        if too_long:
            where = (
                f"line {first_line + too_long[0]}" if first_line is not None else f"input {too_long[0] + 1}"
            )
            warnings.warn(
                f"{len(too_long)} input(s) longer than the model's maximum of {limit} tokens were "
                f"truncated (first: {where})",
                stacklevel=2,
            )
        ids = [np.asarray(seq[:limit], dtype=np.int64) for seq in ids]
        decoded = self.decode_ids(ids, cfg, stats, on_batch)
        texts_out = self.tokenizer.decode([tokens for tokens, _ in decoded])
        return [
            Generation(text, score, len(tokens))
            for text, (tokens, score) in zip(texts_out, decoded, strict=True)
        ]

    def decode_ids(
        self,
        ids: list[np.ndarray],
        cfg: DecodeConfig,
        stats: SpeculativeStats | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[tuple[list[int], float]]:
        """(output ids without BOS/EOS, score) per source (token ids without EOS, at most the model's
        maximum), in input order; an empty source gives ([], 0.0). `janus distill` calls this directly:
        the training split is stored as ids."""
        results: list[tuple[list[int], float]] = [([], 0.0) for _ in ids]
        nonempty = np.array([i for i, seq in enumerate(ids) if len(seq)], dtype=np.int64)
        if len(nonempty) == 0:
            return results
        cost = np.array([len(ids[i]) + 1 for i in nonempty], dtype=np.int64)
        # ascending cost; equal costs come in reverse input order (a stable descending sort, reversed).
        # Outputs go back to input order below; the order only decides which inputs share a batch.
        order = np.argsort(-cost, kind="stable")[::-1]
        for batch in pack_by_tokens(order, cost, max(cfg.max_tokens, int(cost.max()))):
            rows = nonempty[batch]
            src = pad_sequences([ids[i] for i in rows], self.tokenizer.pad_id, suffix=self.tokenizer.eos_id)
            decoded = decode(self.model, src.to(self.device), cfg)
            if stats is not None and decoded.stats is not None:
                stats.add(decoded.stats)
            for i, score, toks in zip(rows, decoded.scores, decoded.tokens, strict=True):
                results[i] = (toks, float(score))
            if on_batch is not None:
                on_batch(len(rows))
        return results

    def generate_stream(
        self,
        lines: Iterable[str],
        cfg: DecodeConfig,
        chunk_lines: int = 512,
        stats: SpeculativeStats | None = None,
    ) -> Iterator[Generation]:
        """Outputs for a stream of lines, in order, reading `chunk_lines` at a time (bounded memory)."""
        it = iter(lines)
        first = 1
        while chunk := list(islice(it, chunk_lines)):
            yield from self.generate_batch(
                [line.rstrip("\n") for line in chunk], cfg, stats, first_line=first
            )
            first += len(chunk)
