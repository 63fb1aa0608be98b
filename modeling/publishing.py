"""The publishing hook: how `push_to_hub` uploads a saved folder.

hf_vision registers its publisher (which writes a validated model card) with `set_publisher`; remote code running
without hf_vision uploads the folder as it is, in one commit, through transformers' Hub client.
"""
from __future__ import annotations

import os
from pathlib import Path

# Hub options `save_pretrained(..., push_to_hub=True, **options)` accepts (the rest go to transformers).
HUB_OPTIONS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr", "tags")
# Set by hf_vision (`hf_vision.hub.publish_folder`, which writes its validated model card): every push of our
# models goes through it. Remote code running without hf_vision uploads the folder as it is.
PUBLISHER = None


def set_publisher(publisher) -> None:
    """Route every push of our models through `publisher(model, folder, repo_id, **hub_options)`."""
    global PUBLISHER
    PUBLISHER = publisher


def publish(model, folder: str | os.PathLike, repo_id: str, **options):
    """Upload `model`'s saved folder: through the registered publisher when there is one, else as it is."""
    if PUBLISHER is not None:
        return PUBLISHER(model, folder, repo_id, **options)
    options["tags"] = [*(model.model_tags or []), *(options.get("tags") or [])] or None
    return upload_folder_in_one_commit(folder, repo_id, **options)


def upload_folder_in_one_commit(folder: str | os.PathLike, repo_id: str, *, commit_message: str | None = None,
                                commit_description: str | None = None, private: bool | None = None,
                                token: bool | str | None = None, revision: str | None = None,
                                create_pr: bool = False, tags: list[str] | None = None):
    """The folder as saved, in one commit (through transformers' Hub client), for remote code without hf_vision;
    without a README.md it gets transformers' own card, as transformers' push_to_hub writes it."""
    from transformers.utils.hub import create_and_tag_model_card, hf_api

    api = hf_api()
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    if not (Path(folder) / "README.md").exists():
        create_and_tag_model_card(repo_id, tags, token=token).save(Path(folder) / "README.md")
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message or "Upload model",
                             commit_description=commit_description, revision=revision, create_pr=create_pr,
                             token=token)

