"""The joint source/target SentencePiece vocabulary, with special ids fixed so models can rely on them.

`<pad>`=0, `<unk>`=1, `<s>`=2, `</s>`=3 and `<mask>`=4 (the masked-decoder placeholder). `<mask>` is a
SentencePiece *control* symbol: encoding raw text never produces it (a literal "<mask>" in the corpus is
ordinary text) and decoding drops it, as it drops pad, bos and eos.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from janusgen.data.hf_tokenizer import HFTokenizer
from janusgen.data.tokenizer_base import HF_FILE, SPM_FILE, TextTokenizer, read_tokenizer_file, tokenizer_file
from janusgen.errors import DataError, JanusError

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3, 4
SPECIAL_PIECES = {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>", MASK_ID: "<mask>"}
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID, "mask": MASK_ID}


def load_tokenizer(path: Path) -> TextTokenizer:
    """The tokenizer stored in file `path` (spm.model or tokenizer.json), or in folder `path`."""
    path = Path(path)
    if path.is_dir():
        path = tokenizer_file(path)
    if path.name == HF_FILE:
        return HFTokenizer.from_file(path)
    return Tokenizer.from_file(path)


class Tokenizer:
    """A SentencePiece model plus its serialized bytes (checkpoints embed them)."""

    file_name = SPM_FILE
    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    mask_id = MASK_ID

    def __init__(self, model_bytes: bytes, where: str = "SentencePiece model") -> None:
        self._bytes = bytes(model_bytes)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self._bytes)
        except (RuntimeError, OSError) as e:
            raise JanusError(f"{where}: not a valid SentencePiece model ({e})") from e
        # Models index embeddings by these ids, so a model trained elsewhere must not slip through.
        actual = {i: self._sp.id_to_piece(i) for i in SPECIAL_PIECES if i < self._sp.get_piece_size()}
        controls = all(self._sp.is_control(i) for i in (PAD_ID, BOS_ID, EOS_ID, MASK_ID))
        if actual != SPECIAL_PIECES or not controls:
            raise JanusError(
                f"{where}: special pieces are {actual}, expected {SPECIAL_PIECES} (not a janusgen model)"
            )

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        max_sentences: int = 2_000_000,
        seed: int = 0,
        num_threads: int = 2,
    ) -> Tokenizer:
        """Train on a uniform random sample of at most `max_sentences` of `sentences`.

        The sample is drawn here, seeded by `seed`, and not by SentencePiece's own
        input_sentence_size/shuffle_input_sentence: sentencepiece 0.2 ignores its generator seed
        there and samples differently in every process. Only the sample is held in memory, so a
        corpus larger than RAM trains in bounded memory. The model is deterministic for the same
        sentences and arguments; `num_threads` is one of them, as the unigram trainer's result
        depends on how its work is split between threads.
        """
        sample = _reservoir_sample(sentences, max_sentences, seed)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sample),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                num_threads=num_threads,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                control_symbols=[SPECIAL_PIECES[MASK_ID]],
                minloglevel=2,  # errors only: prepare prints its own report
            )
        except RuntimeError as e:
            message = str(e).strip()
            if "Vocabulary size too high" in message:
                limit = re.search(r"<= (\d+)", message)
                raise DataError(
                    f"vocabulary size {vocab_size} is too large for this training corpus; pass a smaller "
                    f"--vocab-size" + (f" (at most {limit.group(1)})" if limit else "")
                ) from None
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
            if needed:
                raise DataError(
                    f"--vocab-size {vocab_size} is too small for this training corpus: its characters and "
                    f"the {len(SPECIAL_PIECES)} special pieces need at least {needed.group(1)}"
                ) from None
            raise DataError(f"SentencePiece training failed: {message}") from e
        return cls(model.getvalue(), where="trained SentencePiece model")

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> Tokenizer:
        return cls(model_bytes)

    @classmethod
    def from_file(cls, path: Path) -> Tokenizer:
        return cls(read_tokenizer_file(path, "SentencePiece model"), where=str(path))

    @property
    def model_bytes(self) -> bytes:
        """The serialized model proto: `Tokenizer.from_bytes(t.model_bytes)` rebuilds `t`."""
        return self._bytes

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self._bytes)

    # ------------------------------------------------------------------------------------------ use

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        """Token ids of each text, without BOS/EOS; SentencePiece encodes the batch on `num_threads`."""
        return self._sp.encode(texts, out_type=int, num_threads=num_threads)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Texts of each id sequence; pad, bos, eos and mask (control symbols) decode to nothing."""
        if not ids:
            return []  # SentencePiece would read an empty batch as one empty sequence and return ""
        return self._sp.decode(ids)

    def piece(self, id: int) -> str:
        return self._sp.id_to_piece(id)


def _reservoir_sample(items: Iterable[str], k: int, seed: int) -> list[str]:
    """A uniform random sample of `k` items in one pass, holding only `k` (Algorithm R); all if fewer."""
    rng = random.Random(seed)
    sample: list[str] = []
    for i, item in enumerate(items):
        if i < k:
            sample.append(item)
        elif (j := rng.randrange(i + 1)) < k:
            sample[j] = item
    return sample
