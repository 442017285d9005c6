"""Checkpoints by Hugging Face Hub repo id (janusgen/hub.py), with no network: a repo id is read from a
Hugging Face cache laid out as huggingface_hub lays it out, offline; uploads go to a recording stand-in
for HfApi."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import errors as hub_errors

from janusgen import Translator
from janusgen.checkpoint import MODEL_FILE, read_config, save_checkpoint
from janusgen.config import to_dict
from janusgen.data.dataset import PairDataset
from janusgen.errors import JanusError
from janusgen.hub import push_to_hub, resolve_checkpoint
from janusgen.model.transformer import JanusTransformer
from janusgen.model_card import CARD_FILE, checkpoint_card
from janusgen.presets import model_preset, objective_preset

REVISION = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the Hub names snapshots
INPUTS = ["agua luz", "casa perro gato", "sol"]


@pytest.fixture(scope="module")
def checkpoint(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny janus checkpoint with seeded random weights and a (stand-in) trainer state."""
    tokenizer = PairDataset.open(toy_data, "train").tokenizer
    torch.manual_seed(0)
    model = JanusTransformer(dataclasses.replace(model_preset("tiny"), vocab_size=tokenizer.vocab_size))
    folder = tmp_path_factory.mktemp("hub") / "ckpt"
    config = {"model": to_dict(model.cfg), "objective": to_dict(objective_preset("janus"))}
    save_checkpoint(folder, model, tokenizer, config, trainer_state={"step": 0}, state_tensors={})
    return folder


def fake_cache(cache: Path, repo_id: str, checkpoint: Path) -> Path:
    """A Hugging Face hub cache holding `checkpoint` as the main revision of model repo `repo_id`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(checkpoint, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return repo / "snapshots" / REVISION


def test_a_hub_id_loads_offline_from_the_cache_and_decodes_as_the_folder(checkpoint, tmp_path):
    """HF_HUB_OFFLINE=1 and a cache that holds the repo: from_pretrained("org/name") reads the cache and
    decodes exactly as the folder it was made from (a fresh process: huggingface_hub reads the
    environment when imported)."""
    fake_cache(tmp_path / "hub", "org/name", checkpoint)
    script = f"""
import json
from janusgen import Translator
texts = {INPUTS!r}
out = {{}}
for name in ("org/name", {str(checkpoint)!r}):
    t = Translator.from_pretrained(name, device="cpu")
    out[name] = {{m: t.generate(texts, mode=m, return_scores=True) for m in ("ar", "nar")}}
out["folder"] = str(Translator.from_pretrained("org/name", device="cpu").folder)
try:
    Translator.from_pretrained("org/other", device="cpu")
except Exception as e:
    out["missing"] = str(e)
print(json.dumps(out))
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
    }
    env.pop("HF_TOKEN", None)
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["org/name"] == out[str(checkpoint)]
    assert all(text for mode in out["org/name"].values() for text, _ in mode)
    assert Path(out["folder"]) == tmp_path / "hub" / "models--org--name" / "snapshots" / REVISION
    assert "checkpoint org/other: no such folder" in out["missing"]
    assert "not in the Hugging Face cache" in out["missing"] and "HF_HUB_OFFLINE" in out["missing"]


def test_the_cli_decodes_a_hub_id_from_the_cache_and_names_a_missing_one(checkpoint, tmp_path):
    """`janus generate --checkpoint org/name` (offline, the repo in the cache) writes what the folder
    writes; `--revision` of a snapshot the cache lacks and an unknown repo are errors naming them."""
    fake_cache(tmp_path / "hub", "org/name", checkpoint)
    (tmp_path / "in.txt").write_text("\n".join(INPUTS) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    env["HF_HUB_CACHE"] = str(tmp_path / "hub")
    env.pop("HF_TOKEN", None)

    def generate(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "janusgen", "generate", "--checkpoint", name, "--device", "cpu"]
        argv += ["--input", str(tmp_path / "in.txt"), "--mode", "nar", *extra]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    by_id, by_folder = generate("org/name", "--revision", REVISION), generate(str(checkpoint))
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.stdout == by_folder.stdout and len(by_id.stdout.splitlines()) == len(INPUTS)
    missing = generate("org/name", "--revision", "v2")
    assert (
        missing.returncode == 2
        and "org/name at revision v2 is not in the Hugging Face cache" in missing.stderr
    )
    unknown = generate("org/other")
    assert unknown.returncode == 2 and "checkpoint org/other: no such folder" in unknown.stderr


def test_janus_push_uploads_the_folder_and_prints_the_commit(checkpoint, api, capsys):
    from janusgen.cli import main

    assert main(["push", "--checkpoint", str(checkpoint), "--repo-id", "me/tiny", "--private"]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/me/tiny/commit/{REVISION}"
    assert api.calls[1] == (
        "create_repo",
        "me/tiny",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    assert _uploaded(api)[MODEL_FILE] == (checkpoint / MODEL_FILE).read_bytes()


def test_local_files_only_reads_the_cache_in_this_process(checkpoint, tmp_path, monkeypatch):
    snapshot = fake_cache(tmp_path / "hub", "org/name", checkpoint)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_checkpoint("org/name", local_files_only=True) == snapshot
    assert resolve_checkpoint("org/name", REVISION, local_files_only=True) == snapshot
    with pytest.raises(JanusError, match=r"org/name at revision v2 is not in the Hugging Face cache"):
        resolve_checkpoint("org/name", "v2", local_files_only=True)


def test_only_the_decoding_files_are_asked_for(checkpoint, tmp_path, monkeypatch):
    asked: dict[str, Any] = {}

    def snapshot_download(repo_id: str, **kw: Any) -> str:
        asked.update(kw, repo_id=repo_id)
        return str(checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_checkpoint("org/name", "v1") == checkpoint
    assert asked["repo_id"] == "org/name" and asked["revision"] == "v1"
    assert "trainer_state.json" not in asked["allow_patterns"]
    assert {MODEL_FILE, "config.json", "spm.model", CARD_FILE} <= set(asked["allow_patterns"])


def test_a_folder_is_taken_as_it_is(checkpoint):
    assert resolve_checkpoint(checkpoint) == checkpoint
    assert resolve_checkpoint(str(checkpoint)) == checkpoint
    with pytest.raises(JanusError, match=rf"--revision v1: {checkpoint} is a local folder"):
        resolve_checkpoint(checkpoint, "v1")


def test_a_missing_path_that_is_no_repo_id_is_a_missing_folder(tmp_path):
    """more than owner/name, or ./name: never looked up on the Hub."""
    for name in (str(tmp_path / "run" / "best"), "runs/demo/best", "./best", "best"):
        with pytest.raises(JanusError, match=rf"checkpoint {name} does not exist \(and is not a Hub repo id"):
            resolve_checkpoint(name)


def test_without_huggingface_hub_a_repo_id_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(
        JanusError, match=r"checkpoint org/name: no such folder; .*pip install 'janusgen\[hub\]'"
    ):
        resolve_checkpoint("org/name")


@pytest.mark.parametrize(
    "error, message",
    [
        (
            hub_errors.RepositoryNotFoundError("404", response=mock.MagicMock(status_code=404)),
            r"checkpoint org/name: no such folder, and no Hub model repo org/name that this login can read",
        ),
        (
            hub_errors.RevisionNotFoundError("404", response=mock.MagicMock(status_code=404)),
            r"--revision v9: the Hub repo org/name has no such branch, tag or commit",
        ),
        (
            OSError("connection refused"),
            r"org/name: downloading from the Hugging Face Hub failed \(connection",
        ),
    ],
    ids=["no-repo", "no-revision", "network"],
)
def test_hub_failures_name_the_repo(monkeypatch, error, message):
    def snapshot_download(repo_id: str, **kw: Any) -> str:
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    with pytest.raises(JanusError, match=message):
        resolve_checkpoint("org/name", "v9")


def test_a_repo_without_config_is_not_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    with pytest.raises(JanusError, match=r"Hub repo org/name: not a janusgen checkpoint \(it has no config"):
        resolve_checkpoint("org/name")


# ---------------------------------------------------------------------------------------------- push


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records what would be sent."""

    calls: list[tuple[str, Any, dict[str, Any]]] = []

    def __init__(self, **kw: Any) -> None:
        self.calls.append(("init", None, kw))

    def create_repo(self, repo_id: str, **kw: Any) -> None:
        self.calls.append(("create_repo", repo_id, kw))

    def create_commit(self, repo_id: str, operations: list[Any], **kw: Any) -> Any:
        self.calls.append(("create_commit", repo_id, {"operations": operations, **kw}))
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/{REVISION}")


@pytest.fixture
def api(monkeypatch) -> type[RecordingApi]:
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    return RecordingApi


def _uploaded(api: type[RecordingApi]) -> dict[str, bytes]:
    """path in the repo -> the bytes the commit would upload."""
    (commit,) = [kw for what, _, kw in api.calls if what == "create_commit"]
    files = {}
    for op in commit["operations"]:
        content = op.path_or_fileobj
        files[op.path_in_repo] = content if isinstance(content, bytes) else Path(content).read_bytes()
    return files


def test_push_uploads_the_decoding_files_and_the_card_in_one_commit(checkpoint, api):
    url = Translator.load(checkpoint, device="cpu").push_to_hub("me/tiny", private=True, token="hf_x")
    assert url == f"https://huggingface.co/me/tiny/commit/{REVISION}"
    assert api.calls[0] == (
        "init",
        None,
        {"token": "hf_x", "library_name": "janusgen", "library_version": mock.ANY},
    )
    assert api.calls[1] == (
        "create_repo",
        "me/tiny",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    files = _uploaded(api)
    assert sorted(files) == sorted([MODEL_FILE, "config.json", "spm.model", "checksums.json", CARD_FILE])
    for name, content in files.items():
        assert content == (checkpoint / name).read_bytes()  # as written, not re-saved
    assert files[CARD_FILE].decode().startswith("---\nlibrary_name: janusgen\n")
    assert api.calls[2][2]["commit_message"] == "Upload janusgen checkpoint"


def test_a_checkpoint_without_a_card_is_pushed_with_one_made_from_its_config(checkpoint, tmp_path, api):
    """as janusgen wrote checkpoints before it wrote model cards."""
    old = Path(shutil.copytree(checkpoint, tmp_path / "old"))
    (old / CARD_FILE).unlink()
    push_to_hub(old, "me/old", commit_message="first")
    files = _uploaded(api)
    assert files[CARD_FILE].decode() == checkpoint_card(read_config(old))
    assert not (old / CARD_FILE).exists()  # the folder itself is left as it was
    assert api.calls[-1][2]["commit_message"] == "first"


def test_a_damaged_checkpoint_is_never_pushed(checkpoint, tmp_path, api):
    damaged = Path(shutil.copytree(checkpoint, tmp_path / "damaged"))
    data = bytearray((damaged / MODEL_FILE).read_bytes())
    data[-1] ^= 1
    (damaged / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(JanusError, match=r"model\.safetensors: its sha256 does not match"):
        push_to_hub(damaged, "me/tiny")
    assert api.calls == []


def test_push_needs_the_folder_a_translator_came_from(checkpoint):
    loaded = Translator.load(checkpoint, device="cpu")
    built = Translator(loaded.model, loaded.tokenizer)
    with pytest.raises(JanusError, match=r"push_to_hub: this Translator was not loaded from a checkpoint"):
        built.push_to_hub("me/tiny")


def test_push_without_huggingface_hub_says_what_to_install(checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(JanusError, match=r"pushing .* to the Hub repo me/tiny needs huggingface_hub"):
        push_to_hub(checkpoint, "me/tiny")
