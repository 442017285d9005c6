"""A pre-trained Hugging Face tokenizer (e.g. BART's byte-level BPE) behind the same small interface as
the SentencePiece `Tokenizer`: encode / decode / piece, vocab_size, the special ids, and the bytes a
prepared data folder or a checkpoint stores (`tokenizer.json`, the `tokenizers` library's format).

The special ids are those of the tokenizer's own special tokens (BART: `<s>`=0, `<pad>`=1, `</s>`=2,
`<unk>`=3, `<mask>`=50264), so a pre-trained model's embeddings keep their meaning. Needs the `hf`
extra (`pip install janusgen[hf]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from janusgen.data.tokenizer_base import HF_FILE, read_tokenizer_file
from janusgen.errors import JanusError

# the special tokens a janusgen model needs, by their BART / RoBERTa names
SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "mask": "<mask>"}


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise JanusError(
            "a Hugging Face tokenizer needs the `tokenizers` package: pip install 'janusgen[hf]'"
        ) from None
    return tokenizers


class HFTokenizer:
    """A `tokenizers` tokenizer (from its tokenizer.json bytes)."""

    file_name = HF_FILE

    def __init__(self, json_bytes: bytes, where: str = HF_FILE) -> None:
        self._bytes = bytes(json_bytes)
        try:
            self._tok = _tokenizers().Tokenizer.from_str(self._bytes.decode("utf-8"))
        except Exception as e:  # tokenizers raises a plain Exception for a malformed file
            raise JanusError(f"{where}: not a valid tokenizer.json ({e})") from e
        ids = {name: self._tok.token_to_id(token) for name, token in SPECIAL_TOKENS.items()}
        missing = [SPECIAL_TOKENS[name] for name, i in ids.items() if i is None]
        if missing:
            needed = ", ".join(missing)
            raise JanusError(f"{where}: the tokenizer has no {needed} token (janusgen needs them)")
        self.pad_id, self.unk_id, self.bos_id = ids["pad"], ids["unk"], ids["bos"]
        self.eos_id, self.mask_id = ids["eos"], ids["mask"]
        self._special = set(ids.values())

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def from_bytes(cls, json_bytes: bytes) -> HFTokenizer:
        return cls(json_bytes)

    @classmethod
    def from_file(cls, path: Path) -> HFTokenizer:
        return cls(read_tokenizer_file(path, "tokenizer"), where=str(path))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> HFTokenizer:
        """A tokenizer.json file, a folder holding one, or any folder / hub name that
        `transformers.AutoTokenizer` opens as a fast tokenizer (e.g. facebook/bart-base)."""
        path = Path(name_or_path)
        if path.is_file():
            return cls.from_file(path)
        if (path / HF_FILE).is_file():
            return cls.from_file(path / HF_FILE)
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise JanusError(
                f"--tokenizer {name_or_path}: not a tokenizer.json or a folder with one, and opening it by "
                "name needs transformers: pip install 'janusgen[hf]'"
            ) from None
        try:
            tok = AutoTokenizer.from_pretrained(str(name_or_path), use_fast=True)
        except (OSError, ValueError) as e:
            raise JanusError(f"--tokenizer {name_or_path}: cannot load it ({e})") from e
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise JanusError(f"--tokenizer {name_or_path}: has no fast (tokenizers) version")
        return cls(backend.to_str().encode("utf-8"), where=str(name_or_path))

    @property
    def model_bytes(self) -> bytes:
        return self._bytes

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self._bytes)

    # ------------------------------------------------------------------------------------------ use

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        """Token ids of each text, without BOS/EOS (the tokenizer's own template is not applied)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Texts of each id sequence; the special tokens decode to nothing."""
        ids = [[i for i in row if i not in self._special] for row in ids]
        return self._tok.decode_batch(ids, skip_special_tokens=True)

    def piece(self, id: int) -> str:
        return self._tok.id_to_token(id)
