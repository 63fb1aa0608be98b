"""Run state of both training scripts in one schema: where checkpoints live, when one counts as complete, each
rank's data position, which checkpoint `latest` means, and the guards around resuming.

Two layouts, one schema. MAE pre-training writes `<output_dir>/checkpoints/step_00000042` (a hidden temporary
folder renamed into place, so a visible folder is complete); fine-tuning writes the Trainer's
`<output_dir>/checkpoint-42` in place, which counts only once `checkpoint_complete.json` is in it. Both write:
- `checkpoint_complete.json` (last): {"version", "step", "world_size", "max_steps"};
- `data_state_rank<r>.json` (every rank): {"version", "step", "world_size", "loader": StreamLoader.state_dict()}.

Version 1 (before this schema) is still read: pre-training checkpoints without a mark (step and world size in
their trainer_state.json) whose data files hold the bare loader state, and fine-tuning checkpoints whose mark and
data files carry no version. A newer version than this code knows is refused, naming both.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("hf_vision.training")

RUN_STATE_VERSION = 2
COMPLETE = "checkpoint_complete.json"
DATA_STATE = "data_state_rank{rank}.json"
_ASIDE = (".tmp-", ".deleting-", ".old-")  # written aside / being deleted (".old-": version-1 pre-training)


@dataclass(frozen=True)
class Layout:
    """Where a script's checkpoints live: `<output_dir>/<folder>/<prefix><step>`."""

    folder: str
    prefix: str
    width: int  # zero padding of the step in the name
    renamed_into_place: bool  # complete once visible; otherwise once marked with COMPLETE

    def root(self, output_dir: str | Path) -> Path:
        return Path(output_dir) / self.folder if self.folder else Path(output_dir)

    def path(self, output_dir: str | Path, step: int) -> Path:
        return self.root(output_dir) / f"{self.prefix}{step:0{self.width}d}"

    def step_of(self, path: Path) -> int | None:
        tail = path.name[len(self.prefix):]
        return int(tail) if path.name.startswith(self.prefix) and tail.isdigit() else None


PRETRAIN = Layout("checkpoints", "step_", 8, renamed_into_place=True)
TRAINER = Layout("", "checkpoint-", 0, renamed_into_place=False)  # transformers' PREFIX_CHECKPOINT_DIR


@dataclass(frozen=True)
class RunState:
    """The completion mark: what a resumed run must agree with."""

    step: int
    world_size: int
    max_steps: int | None = None
    version: int = RUN_STATE_VERSION


def _check_version(version: int, path: Path) -> None:
    if version > RUN_STATE_VERSION:
        raise ValueError(f"{path} was written with run-state version {version}; this hf_vision reads versions 1 to "
                         f"{RUN_STATE_VERSION}: resume it with the hf_vision that wrote it, or a newer one")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def mark_complete(folder: Path, state: RunState) -> None:
    write_atomic(folder / COMPLETE, json.dumps(asdict(state)))


def read_run_state(checkpoint: str | Path) -> RunState:
    """The checkpoint's mark; for version 1, what its trainer_state.json says."""
    path = Path(checkpoint)
    trainer_state = path / "trainer_state.json"
    saved = json.loads(trainer_state.read_text()) if trainer_state.is_file() else {}
    if (path / COMPLETE).is_file():
        mark = json.loads((path / COMPLETE).read_text())
        _check_version(mark.get("version", 1), path)
        return RunState(step=mark["step"], world_size=mark["world_size"],
                        max_steps=mark.get("max_steps", saved.get("max_steps")), version=mark.get("version", 1))
    if "step" in saved and "world_size" in saved:  # version-1 pre-training checkpoint
        return RunState(step=saved["step"], world_size=saved["world_size"], max_steps=saved.get("max_steps"),
                        version=1)
    raise FileNotFoundError(f"{path} is not a complete checkpoint (no {COMPLETE}, and no version-1 trainer_state.json)")


def write_data_state(folder: Path, *, rank: int, world_size: int, step: int, loader_state: dict[str, Any]) -> None:
    saved = {"version": RUN_STATE_VERSION, "step": step, "world_size": world_size, "loader": loader_state}
    write_atomic(folder / DATA_STATE.format(rank=rank), json.dumps(saved))


def read_data_state(checkpoint: str | Path, *, rank: int, world_size: int, missing_hint: str = "") -> dict[str, Any]:
    """This rank's saved loader state, after checking that the run has as many processes as the one that saved it."""
    path = Path(checkpoint) / DATA_STATE.format(rank=rank)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing, so the data position of {checkpoint} is unknown{missing_hint}")
    saved = json.loads(path.read_text())
    if "loader" not in saved:  # version 1 of pre-training: the bare loader state; the world size is in the mark
        saved = {"version": 1, "world_size": read_run_state(checkpoint).world_size, "loader": saved}
    _check_version(saved.get("version", 1), path)
    if saved["world_size"] != world_size:
        raise ValueError(f"{checkpoint} was written by {saved['world_size']} processes, this run has {world_size}: "
                         "resume with the same number of processes to continue the data exactly")
    return saved["loader"]


def list_checkpoints(output_dir: str | Path, layout: Layout) -> list[Path]:
    """Complete checkpoints, oldest first (folders written aside start with '.' and are never listed)."""
    root = layout.root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and layout.step_of(p) is not None
             and (layout.renamed_into_place or (p / COMPLETE).is_file())]
    return sorted(found, key=layout.step_of)


def resolve_checkpoint(spec: str | None, output_dir: str | Path, layout: Layout, *,
                       latest_may_be_missing: bool = True) -> Path | None:
    """--resume_from_checkpoint: a checkpoint folder, or 'latest' (the newest complete one; none yet: a fresh
    start, said in the log, or FileNotFoundError when `latest_may_be_missing` is false)."""
    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir, layout)
        if found:
            return found[-1]
        where = f"no checkpoint ({layout.prefix}N, complete) under {layout.root(output_dir)}"
        if not latest_may_be_missing:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: {where}")
        logger.warning("--resume_from_checkpoint latest: %s yet; starting from step 0", where)
        return None
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {spec}: no such checkpoint folder")
    if not (path / COMPLETE).is_file() and not (layout.renamed_into_place and (path / "trainer_state.json").is_file()):
        raise FileNotFoundError(f"--resume_from_checkpoint {spec}: incomplete checkpoint (no {COMPLETE}; the run "
                                "was interrupted while writing it); pass an older one or 'latest'")
    return path


def remove_checkpoint(path: Path) -> None:
    """Rename aside (atomic, and no longer listed) before deleting, so a crash mid-delete leaves only debris."""
    doomed = path.with_name(f".deleting-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def rotate(output_dir: str | Path, layout: Layout, limit: int | None, *, keep: Path | None = None) -> None:
    """Keep the newest `limit` complete checkpoints (and `keep`); called once the newest is complete."""
    if limit:
        for old in [p for p in list_checkpoints(output_dir, layout)[:-limit] if p != keep]:
            remove_checkpoint(old)


def remove_debris(output_dir: str | Path, layout: Layout) -> None:
    """What an interrupted run left: folders written aside or caught mid-deletion, unmarked checkpoints."""
    root = layout.root(output_dir)
    if not root.is_dir():
        return
    complete = set(list_checkpoints(output_dir, layout))
    for path in root.iterdir():
        aside = any(path.name.startswith(f"{a}{layout.prefix}") for a in _ASIDE)
        if path.is_dir() and (aside or (layout.step_of(path) is not None and path not in complete)):
            logger.warning("removing %s: left incomplete by an interrupted run", path)
            shutil.rmtree(path)


def save_accelerate_checkpoint(accelerator, output_dir: Path, step: int, loader_state: dict[str, Any], limit: int,
                               extra: dict[str, Any]) -> Path:
    """MAE pre-training's save (PRETRAIN layout): `Accelerator.save_state` into a temporary folder, this rank's data
    position, then (main process) trainer_state.json and the mark, the rename into place, and rotation. Every rank
    takes part."""
    final = PRETRAIN.path(output_dir, step)
    tmp = final.with_name(f".tmp-{final.name}")
    world = accelerator.num_processes
    if accelerator.is_main_process:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # debris of an interrupted earlier attempt
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    write_data_state(tmp, rank=accelerator.process_index, world_size=world, step=step, loader_state=loader_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # trainer_state.json: what version-1 readers and people look at; the completion mark is the run state.
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "world_size": world, **extra}, indent=2))
        mark_complete(tmp, RunState(step=step, world_size=world, max_steps=extra.get("max_steps")))
        if final.exists():  # re-saving the same step (e.g. after a resume): retire the old one first
            remove_checkpoint(final)
        os.replace(tmp, final)
        rotate(output_dir, PRETRAIN, limit)
    accelerator.wait_for_everyone()
    return final


def check_output_dir(output_dir: str | Path, *, overwrite: bool, resuming: bool) -> None:
    """A non-empty output folder is written into only when resuming or with --overwrite_output_dir."""
    folder = Path(output_dir)
    if resuming or overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    raise FileExistsError(f"--output_dir {folder} is not empty: pass --overwrite_output_dir to write into it, "
                          "--resume_from_checkpoint latest to continue the run there, or another --output_dir")


def clean_output_dir(output_dir: str | Path, layout: Layout, *, overwrite: bool, resuming: bool) -> None:
    """Main process, after check_output_dir on every rank: remove debris, and with --overwrite_output_dir (not
    resuming) the earlier run's checkpoints."""
    if not (resuming or overwrite):
        return
    remove_debris(output_dir, layout)
    if not resuming:
        for old in list_checkpoints(output_dir, layout):
            logger.warning("--overwrite_output_dir: removing %s of an earlier run", old)
            remove_checkpoint(old)


def check_same_max_steps(saved: int | None, requested: int, checkpoint: str | Path) -> None:
    """The learning-rate schedule spans the run's max_steps; resuming with another would bend it silently."""
    if saved is not None and saved != requested:
        raise ValueError(
            f"--max_steps {requested}: {checkpoint} belongs to a run of max_steps={saved}, and its learning-rate "
            f"schedule (warm-up and decay) spans those {saved} steps; resume with --max_steps {saved} (or the same "
            "--num_train_epochs), or start a new run from its weights (--model <checkpoint folder>)")
