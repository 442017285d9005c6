"""What every tokenizer shares, apart from the kinds (the SentencePiece `tokenizer.Tokenizer` and the
Hugging Face `hf_tokenizer.HFTokenizer`), so that both and their users import it without importing each
other: the interface the rest of janusgen uses, and the names a stored tokenizer has in a prepared data
folder or a checkpoint (`tokenizer.load_tokenizer` picks the kind by that name)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from janusgen.errors import JanusError


class TextTokenizer(Protocol):
    """What the rest of janusgen uses of a tokenizer: SentencePiece (`Tokenizer`, trained by `janus data
    prepare`) or a pre-trained Hugging Face one (`hf_tokenizer.HFTokenizer`, `--tokenizer`). A prepared
    folder or checkpoint stores it as `file_name`, and `tokenizer.load_tokenizer` picks the class by that
    name."""

    file_name: str
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    mask_id: int

    @property
    def vocab_size(self) -> int: ...
    @property
    def model_bytes(self) -> bytes: ...
    def save(self, path: Path) -> None: ...
    def encode(self, texts: list[str], num_threads: int = 2) -> list[list[int]]: ...
    def decode(self, ids: list[list[int]]) -> list[str]: ...
    def piece(self, id: int) -> str: ...


SPM_FILE = "spm.model"
HF_FILE = "tokenizer.json"
TOKENIZER_FILES = (SPM_FILE, HF_FILE)  # the names a stored tokenizer may have, by kind


def read_tokenizer_file(path: Path, what: str) -> bytes:
    """The bytes of a stored tokenizer, or an error naming the file."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise JanusError(f"cannot read {what} {path}: {e.strerror or e}") from e


def tokenizer_file(folder: Path) -> Path:
    """The one stored tokenizer file of a prepared data folder or checkpoint."""
    found = [Path(folder) / name for name in TOKENIZER_FILES if (Path(folder) / name).is_file()]
    if len(found) != 1:
        what = "none" if not found else " and ".join(f.name for f in found)
        names = " or ".join(TOKENIZER_FILES)
        raise JanusError(f"{folder}: expected one tokenizer file ({names}), found {what}")
    return found[0]
