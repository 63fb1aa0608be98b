"""Save safety: what a save may replace in a folder, and writing files without following a symlink.

`save_pretrained` records the sha256 of every file it writes in config.json (FILES_FIELD); a later save into the
same folder replaces those silently and warns about anything else it would overwrite (`foreign_files`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` as a fresh regular file: a symlink there is replaced, never written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # renames over the directory entry: a link's target is left untouched
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# transformers' weight files: model.safetensors, its shards model-00001-of-00003.safetensors and their index.
WEIGHT_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?")
CONFIG_NAME, PROCESSOR_NAME = "config.json", "preprocessor_config.json"
# config.json fields written by save_pretrained (not config attributes: __init__ never sees or validates them)
FILES_FIELD, FLOOR_FIELD = "hf_vision_files", "hf_vision_min_transformers"


def previous_save(folder: Path) -> dict[str, str] | None:
    """{file name: sha256} recorded by an earlier hf-vision save into `folder`, or None if it holds none."""
    config = folder / CONFIG_NAME
    if config.is_symlink() or not config.is_file():
        return None
    try:
        recorded = json.loads(config.read_text()).get(FILES_FIELD)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def foreign_files(folder: Path, outputs: list[str]) -> list[str]:
    """Names in `folder` that a save is about to replace or delete but that an earlier hf-vision save did not write.

    Ours: config.json holding our file record (FILES_FIELD); weight files beside such a config.json; a source
    or processor file whose sha256 is the one recorded (unchanged since we wrote it). Foreign: any symlink; any
    other existing file among `outputs` or transformers' weight names (a user's same-named .py, an edited file,
    another model's checkpoint).
    """
    previous = previous_save(folder)
    names = set(outputs) | {p.name for p in folder.iterdir() if WEIGHT_FILE.fullmatch(p.name)}
    foreign = []
    for name in sorted(names):
        path = folder / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or previous is None or not path.is_file():
            foreign.append(name)
        elif name != CONFIG_NAME and not WEIGHT_FILE.fullmatch(name) and previous.get(name) != sha256_of(path):
            foreign.append(name)
    return foreign

