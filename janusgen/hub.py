"""Checkpoints on the Hugging Face Hub: `resolve_checkpoint` turns a folder or a Hub repo id into a local
checkpoint folder, `push_to_hub` uploads one.

Downloads go through huggingface_hub's own cache (HF_HOME / HF_HUB_CACHE), so a second load reads the
disk; HF_HUB_OFFLINE=1 (or local_files_only) reads only that cache. Only the files that decoding needs
are downloaded and uploaded: the trainer state (optimizer moments, twice the weights) stays local.
Needs the `hub` extra: pip install 'janusgen[hub]'.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import janusgen
from janusgen.checkpoint import CHECKSUMS_FILE, CONFIG_FILE, MODEL_FILE, read_config, verify_files
from janusgen.data.tokenizer_base import TOKENIZER_FILES, tokenizer_file
from janusgen.errors import JanusError
from janusgen.model_card import CARD_FILE, checkpoint_card

# what a checkpoint needs to decode, and its card: all that is downloaded or uploaded
HUB_FILES = (MODEL_FILE, CONFIG_FILE, *TOKENIZER_FILES, CHECKSUMS_FILE, CARD_FILE)
COMMIT_MESSAGE = "Upload janusgen checkpoint"
# owner/name, as the Hub spells repo ids; anything else (a path with more parts, ./x, /x) is a folder
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _hub(what: str) -> Any:
    """huggingface_hub, or an error saying that `what` needs it."""
    try:
        import huggingface_hub
    except ImportError:
        raise JanusError(f"{what} needs huggingface_hub: pip install 'janusgen[hub]'") from None
    return huggingface_hub


def resolve_checkpoint(
    name_or_path: str | Path, revision: str | None = None, *, local_files_only: bool = False
) -> Path:
    """The local checkpoint folder that `name_or_path` names: an existing path as it is, else an
    `owner/name` Hub repo id, downloaded (at `revision`: a branch, tag or commit; default main) into the
    Hugging Face cache, or found there when offline (HF_HUB_OFFLINE=1 or `local_files_only`). Errors name
    the folder or repo id and say what is missing."""
    path = Path(name_or_path)
    if path.exists():
        if revision is not None:
            raise JanusError(f"--revision {revision}: {path} is a local folder, which has no revisions")
        return path
    name = str(name_or_path)
    if not _REPO_ID.fullmatch(name):
        raise JanusError(f"checkpoint {name} does not exist (and is not a Hub repo id: owner/name)")
    hub = _hub(f"checkpoint {name}: no such folder; downloading it as a Hugging Face Hub repo id")
    from huggingface_hub import constants, errors

    try:
        folder = hub.snapshot_download(
            name,
            revision=revision,
            allow_patterns=list(HUB_FILES),
            local_files_only=local_files_only,
            library_name="janusgen",
            library_version=janusgen.__version__,
        )
    except errors.RevisionNotFoundError:
        raise JanusError(
            f"--revision {revision}: the Hub repo {name} has no such branch, tag or commit"
        ) from None
    except errors.RepositoryNotFoundError:  # also what a private or gated repo without access gives
        raise JanusError(
            f"checkpoint {name}: no such folder, and no Hub model repo {name} that this login can read "
            "(a private repo needs `hf auth login` or HF_TOKEN)"
        ) from None
    except errors.LocalEntryNotFoundError:
        raise JanusError(
            f"checkpoint {name}: no such folder, and the Hub repo {name}"
            f"{f' at revision {revision}' if revision else ''} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) while downloads are off (HF_HUB_OFFLINE=1 or local_files_only) "
            "or the Hub cannot be reached; download it once online"
        ) from None
    except errors.HFValidationError as e:
        raise JanusError(f"checkpoint {name}: not a valid Hub repo id ({e})") from None
    except OSError as e:  # the network (huggingface_hub's HTTP errors are OSErrors)
        raise JanusError(f"checkpoint {name}: downloading from the Hugging Face Hub failed ({e})") from None
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise JanusError(f"Hub repo {name}: not a janusgen checkpoint (it has no {CONFIG_FILE})")
    return folder


def push_to_hub(
    checkpoint_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = COMMIT_MESSAGE,
) -> str:
    """Upload checkpoint folder `checkpoint_dir` (its weights, config, tokenizer, checksums and model
    card; not the trainer state) to the Hub model repo `repo_id`, created if it does not exist (`private`
    then decides its visibility), in one commit. The folder is verified first, so a damaged checkpoint is
    never published; a folder written before janusgen wrote model cards gets one made from its
    config.json. `token`: None uses the login (`hf auth login` or HF_TOKEN). Returns the commit's URL."""
    folder = Path(checkpoint_dir)
    config = read_config(folder)
    names = [name for name in HUB_FILES if (folder / name).is_file()]
    verify_files(folder, (MODEL_FILE, CONFIG_FILE, tokenizer_file(folder).name))
    hub = _hub(f"pushing {folder} to the Hub repo {repo_id}")
    operations = [
        hub.CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in names
    ]
    if CARD_FILE not in names:
        card = checkpoint_card(config).encode("utf-8")
        operations.append(hub.CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card))
    api = hub.HfApi(token=token, library_name="janusgen", library_version=janusgen.__version__)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")
    except OSError as e:  # huggingface_hub's HTTP errors: no login, no write access, the network
        raise JanusError(f"pushing {folder} to the Hub repo {repo_id} failed ({e})") from None
    return str(commit.commit_url)
