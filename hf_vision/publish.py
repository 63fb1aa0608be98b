"""Publish a checkpoint: upload a `save_pretrained` folder to the Hub in one commit, with our validated model card.

Every push path ends in `push_folder`: our models' `push_to_hub` and `save_pretrained(push_to_hub=True)` (through
`publish_folder`, registered with `modeling.pretrained.set_publisher` below), the Trainer's push and the scripts.
`hf_vision.hub` re-exports these names: import them from there.
"""
from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard

from .model_card import OUR_CARD_TAG, UNPUBLISHED_LOCATION, card_for_folder, validate_card
from .modeling.pretrained import set_publisher

TRAINER_CARD_TAG = "generated_from_trainer"  # the Trainer's generic card, replaced by ours on upload
# Training leftovers that do not belong in a shared checkpoint.
DEFAULT_IGNORE = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "training_args.bin", "trainer_state.json",
                  "*.lock", ".*")


def push_to_hub(model, repo_id: str, *, card_kwargs: dict[str, Any] | None = None, **options: Any) -> CommitInfo:
    """Save `model` (weights, config with auto_map, remote code, processor, card) and upload it in one commit.

    card_kwargs: forwarded to the model card (datasets, metrics, training_args, base_model, license, ...).
    options: `push_folder`'s (private, revision, commit_message, commit_description, token, create_pr, endpoint);
    revision is the branch to commit to, created from main when it does not exist yet.
    """
    with tempfile.TemporaryDirectory(prefix="hfv-push-") as folder:
        save_with_card(model, folder, **{"repo_id": repo_id, **(card_kwargs or {})})
        return push_folder(folder, repo_id, **options)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    card_kwargs: dict[str, Any] | None = None,
    ignore_patterns: Iterable[str] = DEFAULT_IGNORE,
    endpoint: str | None = None,
) -> CommitInfo:
    """Upload a `save_pretrained` folder (e.g. a training run's output) in one commit, with its model card.

    A folder without README.md (or with the Trainer's generic card) gets our card built from its config.json,
    safetensors and the run's json files (all_results.json, run_args.json, ...); `card_kwargs` adds or overrides
    card fields. Every other push path (our models' `push_to_hub`, `save_pretrained(push_to_hub=True)`, the
    Trainer's push, the scripts) ends here. Subfolders (Trainer's checkpoint-*/, runs/) are not uploaded.
    """
    if not Path(folder).exists():  # named as typed ("./run", not Path's "run")
        raise FileNotFoundError(f"{os.fspath(folder)} does not exist")
    folder = Path(folder)
    check_checkpoint_folder(folder)
    files = {p.name: p for p in sorted(folder.iterdir())
             if p.is_file() and not any(fnmatch.fnmatch(p.name, pat) for pat in ignore_patterns)}
    build_card = bool(card_kwargs) or is_generated_card(files.get("README.md"))
    card = card_for_folder(folder, **{"repo_id": repo_id, **(card_kwargs or {})}) if build_card \
        else files["README.md"].read_text()
    validate_card(card)  # before anything reaches the Hub

    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id  # "name" -> "user/name"
    readme = None
    if build_card:  # the card's usage snippet names the full repo id
        readme = str(card_for_folder(folder, **{"repo_id": repo_id, **(card_kwargs or {})})).encode()
    elif f'"{UNPUBLISHED_LOCATION}"' in card and OUR_CARD_TAG in card:  # our card, written before the push (a run)
        readme = card.replace(f'"{UNPUBLISHED_LOCATION}"', f'"{repo_id}"').encode()
    if private is not None and api.model_info(repo_id).private != private:  # an existing repo changes visibility
        api.update_repo_settings(repo_id, private=private)
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                  for name, path in files.items() if not (readme is not None and name == "README.md")]
    if readme is not None:
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
    return api.create_commit(
        repo_id, operations,
        commit_message=commit_message or f"Upload {_architecture(folder)} with hf-vision",
        commit_description=commit_description, revision=revision, create_pr=create_pr,
    )


def save_with_card(model, folder: str | os.PathLike, **card_kwargs: Any) -> Path:
    """`model.save_pretrained(folder)` plus its validated model card as README.md (what a push would upload)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    card = card_for_folder(folder, **card_kwargs)  # the same card every push path builds
    validate_card(card)
    card.save(folder / "README.md")
    return folder


def publish_folder(model, folder: str | os.PathLike, repo_id: str, *, tags: Iterable[str] | None = None,
                   card_kwargs: dict[str, Any] | None = None, **options: Any) -> CommitInfo:
    """What our models' `push_to_hub` and `save_pretrained(..., push_to_hub=True)` call (registered with
    `set_publisher` on import): upload the folder `model.save_pretrained` just wrote, with our card, in one commit."""
    card_kwargs = dict(card_kwargs or {})
    if tags:
        card_kwargs["tags"] = [*card_kwargs.get("tags", ()), *tags]
    return push_folder(folder, repo_id, card_kwargs=card_kwargs, **options)


def is_generated_card(readme: Path | None) -> bool:
    """Whether a folder's README.md is absent or a generated card we replace with ours (the Trainer's generic
    `generated_from_trainer` card); any other card, ours or the user's, is uploaded as it is (once validated)."""
    if readme is None or not readme.is_file():
        return True
    try:
        tags = ModelCard.load(readme, ignore_metadata_errors=True).data.tags or []
    except Exception:  # unparsable metadata: the user's card, which validation then rejects with the reason
        return False
    return TRAINER_CARD_TAG in tags and OUR_CARD_TAG not in tags


def check_checkpoint_folder(folder: Path) -> None:
    """Refuse to upload a folder that would not load as remote code (the error names what is absent)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist" if not folder.exists() else f"{folder} is not a folder")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: save it with model.save_pretrained(folder) first")
    config = json.loads((folder / "config.json").read_text())
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"{folder} holds no .safetensors weights")
    auto_map = config.get("auto_map") or {}
    for auto in ("AutoConfig", "AutoModel"):
        if auto not in auto_map:
            raise ValueError(f"{folder}/config.json: auto_map lacks {auto} (got {sorted(auto_map)})")
    for auto, reference in auto_map.items():
        module = reference.split("--")[-1].rpartition(".")[0]
        if not (folder / f"{module}.py").is_file():
            raise ValueError(f"{folder}: auto_map[{auto!r}] = {reference!r} but {module}.py is not in the folder")
    if not (folder / "preprocessor_config.json").is_file():
        raise ValueError(f"{folder} has no preprocessor_config.json")


def _architecture(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    return (config.get("architectures") or [config.get("model_type", "model")])[0]


set_publisher(publish_folder)  # our models' push_to_hub / save_pretrained(push_to_hub=True) end in push_folder
