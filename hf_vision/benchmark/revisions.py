"""Our models as an earlier git revision of this repository defined them, as extra benchmark contenders.

A speed target stated as "at least today's figures" is checked on the machine at hand by timing the models of
that day in the same process as today's: `git archive REV modeling` is unpacked into a temporary folder and
imported under a package name of its own (`hf_vision_rev_<sha>`; the model files use relative imports only, so
any name works), the same class is built from the same config, and our weights are loaded into it strictly, so
both compute the same function on the same inputs (the tests check the outputs agree).
"""
from __future__ import annotations

import atexit
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from .suites import Contender, Unavailable

REVISION_PREFIX = "ours@"  # contender name of a revision: "ours@<short sha>" (a reference, not one of ours)
MODELING_PACKAGE = "hf_vision.modeling"
_packages: dict[str, ModuleType] = {}  # full sha -> imported package
_folder: Path | None = None


def repository_root() -> Path:
    """The git work tree this package was imported from; a clear error for an installed copy without one."""
    here = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(["git", "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"against: comparing with a git revision needs hf_vision imported from a git clone of "
                         f"the repository with git installed; {here} is not one ({error})") from None
    root = Path(top)
    if not (root / "modeling").is_dir():
        raise ValueError(f"against: {root} has no modeling/ folder; is it the hf-vision repository?")
    return root


def resolve_revision(revision: str) -> str:
    """The full commit sha of `revision` (a sha, tag, branch or expression such as HEAD~3)."""
    root = repository_root()
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"against: {revision!r} is not a commit of the repository at {root}")
    return done.stdout.strip()


def revision_modeling(revision: str) -> ModuleType:
    """The `modeling/` package of `revision`, imported once per process as `hf_vision_rev_<sha12>`."""
    global _folder
    sha = resolve_revision(revision)
    if sha in _packages:
        return _packages[sha]
    root = repository_root()
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", sha, "modeling"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise ValueError(f"against: revision {revision!r} ({sha[:12]}) has no modeling/ folder: "
                         f"{archive.stderr.decode(errors='replace').strip()}")
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="hf-vision-revisions-"))
        atexit.register(shutil.rmtree, _folder, ignore_errors=True)
        sys.path.insert(0, str(_folder))
    name = f"hf_vision_rev_{sha[:12]}"
    unpacked = _folder / "unpacked" / name
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        # the "data" filter (refuses links and paths out of the folder) exists from Python 3.10.12 / 3.11.4 on
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked / "modeling").rename(_folder / name)
    _packages[sha] = importlib.import_module(name)
    return _packages[sha]


def _counterpart(package: ModuleType, obj: type) -> type:
    """The class of the same name in the same submodule of the revision's package."""
    module = obj.__module__
    if not module.startswith(MODELING_PACKAGE + "."):
        raise ValueError(f"{obj.__name__} is not one of our model classes ({module})")
    submodule = importlib.import_module(package.__name__ + module[len(MODELING_PACKAGE):])
    found = getattr(submodule, obj.__name__, None)
    if found is None:
        raise ValueError(f"the revision has no {obj.__name__} in {submodule.__name__}")
    return found


def revision_model(ours: nn.Module, revision: str) -> nn.Module:
    """`ours` (one of our model classes) as `revision` defined it: same class name, same config, our weights loaded
    strictly (a head renamed since, `classifier.*` <-> `head.*`, is mapped)."""
    package = revision_modeling(revision)
    config_class = _counterpart(package, type(ours.config))
    fields = {k: v for k, v in ours.config.to_dict().items()
              if k not in ("model_type", "transformers_version", "architectures")}
    model = _counterpart(package, type(ours))(config_class(**fields))
    theirs = set(model.state_dict())
    state = {}
    for key, value in ours.state_dict().items():
        if key not in theirs and key.startswith("classifier.") and "head." + key[len("classifier."):] in theirs:
            key = "head." + key[len("classifier."):]
        state[key] = value
    model.load_state_dict(state, strict=True)
    return model.to(dtype=next(ours.parameters()).dtype)


def add_revisions(contenders: dict[str, Contender | Unavailable], revisions: tuple[str, ...]) -> None:
    """Add `ours@<sha>` for each revision, built from the plain "ours" contender, after the references."""
    ours = contenders.get("ours")
    for revision in revisions:
        sha = resolve_revision(revision)
        name = REVISION_PREFIX + sha[:7]
        if not isinstance(ours, Contender):
            contenders[name] = Unavailable("no model of ours to rebuild at that revision")
            continue
        try:
            with torch.random.fork_rng():  # the revision's init must not shift the seed of what is built after it
                model = revision_model(ours.model, sha)
        except (ValueError, TypeError, RuntimeError, ImportError, AttributeError) as error:
            contenders[name] = Unavailable(f"revision {sha[:7]} cannot build this model: {error}"[:300])
            continue
        contenders[name] = Contender(model, ours.kind)
