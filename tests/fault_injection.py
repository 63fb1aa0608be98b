"""Kill a training script at every file operation of one checkpoint save, then resume it: the driver behind the
crash-safety tests of both training scripts.

    python tests/fault_injection.py <script.py> <work folder> <tag> -- <script args>

<tag> names the checkpoint save to attack (e.g. "checkpoint-4"): its file operations are every write, rename
and delete whose path contains the tag, plus what follows it inside that save (rotating an older checkpoint
out). The driver imports once and then forks (nothing has run yet, so OpenMP is still fork-safe): first a
reference run that records those operations, then, for each of them, a run that `os._exit(137)`s just before
it, followed by a run with `--resume_from_checkpoint latest`. Inside a deletion only its first and a middle
entry are kill points (the others are alike), and
the same for the model's source files. Results go to <work>/results.json; the folders are <work>/ref
and <work>/kill-<i>, compared by the tests.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path


class Recorder:
    """Audit hook + wrappers for the writers that bypass Python's open (torch.save, safetensors)."""

    def __init__(self, output_dir: Path, tag: str, kill_at: int | None) -> None:
        self.output_dir, self.tag, self.kill_at = str(output_dir), tag, kill_at
        self.active, self.in_delete = False, False
        self.events: list[str] = []

    def note(self, kind: str, path) -> None:
        if not isinstance(path, (str, os.PathLike)):
            return
        path = os.fsdecode(path)
        if os.path.isabs(path):
            if not path.startswith(self.output_dir):
                return
            name = os.path.relpath(path, self.output_dir)
            self.active = self.active or self.tag in name
            if not self.active or not ("checkpoint" in name or "step_" in name):
                return
            self.in_delete = kind == "rmtree"
        elif not (self.active and self.in_delete and kind in ("remove", "rmdir")):
            return
        else:
            name = f"(deleting) {path}"
        if self.kill_at is not None and len(self.events) == self.kill_at:
            os._exit(137)
        self.events.append(f"{kind} {name}")

    def hook(self, event: str, args) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and set(mode) & set("wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR))
            if writing:
                self.note("write", path)
        elif event == "os.rename":
            self.note("rename", args[0])
        elif event in ("os.remove", "os.rmdir"):
            self.note(event[3:], args[0])
        elif event == "shutil.rmtree":
            self.note("rmtree", args[0])

    def install(self) -> None:
        import accelerate.utils.other
        import torch
        import transformers.modeling_utils

        sys.addaudithook(self.hook)

        def wrap(fn, position: int):
            def wrapped(*args, **kwargs):
                if len(args) > position:
                    self.note("write", args[position])
                return fn(*args, **kwargs)
            return wrapped

        torch.save = wrap(torch.save, 1)
        transformers.modeling_utils.safe_save_file = wrap(transformers.modeling_utils.safe_save_file, 1)
        accelerate.utils.other.safe_save_file = wrap(accelerate.utils.other.safe_save_file, 1)


def _in_child(fn) -> int:
    """Run fn in a forked child; its exit status (137: killed by the injector)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _kill_points(events: list[str]) -> list[int]:
    """Every operation, except within a run of alike ones (the entries of a deletion, the model's source files):
    its first and a middle one."""
    def kind(event: str) -> str | None:
        if event.startswith(("remove (deleting)", "rmdir (deleting)")):
            return "deleting"
        return "source" if event.startswith("write") and event.endswith(".py") else None

    points, run, run_kind = [], [], None
    for i, event in enumerate(events + ["end"]):
        if run and kind(event) != run_kind:
            points += sorted({run[0], run[len(run) // 2]})
            run = []
        if kind(event) is not None:
            run, run_kind = run + [i], kind(event)
        elif event != "end":
            points.append(i)
    return points


def main(argv: list[str]) -> None:
    script, work, tag = Path(argv[0]), Path(argv[1]), argv[2]
    script_args = argv[argv.index("--") + 1:]
    spec = importlib.util.spec_from_file_location("script_under_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(out: Path, kill_at: int | None, record: Recorder | None = None, *extra: str) -> None:
        recorder = record or Recorder(out, tag, kill_at)
        recorder.install()
        module.main(["--output_dir", str(out), *script_args, *extra])

    reference = Recorder(work / "ref", tag, None)

    def record() -> None:
        run(work / "ref", None, reference)
        (work / "events.json").write_text(json.dumps(reference.events))

    results: dict = {"reference": _in_child(record)}
    events = json.loads((work / "events.json").read_text()) if results["reference"] == 0 else []
    results["events"] = events
    results["points"] = []
    for i in _kill_points(events):
        out = work / f"kill-{i}"
        killed = _in_child(lambda: run(out, i))
        resumed = _in_child(lambda: module.main(["--output_dir", str(out), *script_args,
                                                 "--resume_from_checkpoint", "latest"]))
        results["points"].append({"index": i, "event": events[i], "killed": killed, "resumed": resumed})
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
