"""Errors name what the user typed, scripts print one line instead of a traceback, logs carry no ANSI codes."""
from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hf_vision
from hf_vision import hub
from hf_vision.cli import StripAnsi, one_line, plain_logs, run_main

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub lookup fails the test: a local path must be refused before one."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"Hub lookup attempted: {args}")
    monkeypatch.setattr(hub, "hf_hub_download", refuse)


@pytest.mark.parametrize("typed", ["./my-vit", "my_dir/", "outputs/run/model", "~/no-such-checkpoint", "../ckpt"])
def test_a_missing_local_path_is_named_before_any_hub_lookup(typed, tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        hf_vision.from_pretrained(typed)
    assert typed in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hf_vision.from_pretrained(tmp_path / "missing")  # a Path is always local


def test_valid_repo_ids_and_existing_paths_are_not_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    for name in ("org/name", "my-vit", "ckpt", "./ckpt", str(tmp_path / "ckpt")):
        hub.check_local_path(name)


def test_offline_miss_names_the_repo_the_cache_and_the_switch(tmp_path, monkeypatch):
    monkeypatch.setattr(hub.hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError) as error:
        hf_vision.from_pretrained("org/not-cached", cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "'org/not-cached'" in message and str(tmp_path / "cache") in message and "HF_HUB_OFFLINE" in message


def test_unreachable_hub_message_names_repo_endpoint_and_cache(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(hub.hub_constants, "HF_HUB_OFFLINE", False)
    message = str(hub.hub_error("org/name", LocalEntryNotFoundError("cannot connect"), cache_dir=tmp_path))
    assert "'org/name'" in message and hub.hub_constants.ENDPOINT in message and str(tmp_path) in message
    assert "network" in message


def test_push_folder_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope does not exist"):
        hub.push_folder(tmp_path / "nope", "org/name")


# ------------------------------------------------------------------------------------------------ one error line


def test_run_main_prints_one_line_and_exits_1(capsys):
    def main(argv):
        raise ValueError("first line\nsecond line")

    with pytest.raises(SystemExit) as exit_:
        run_main(main, ["--x"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ValueError: first line") and "--debug" in err
    with pytest.raises(ValueError):  # --debug lets the exception (and its traceback) through
        run_main(main, ["--debug"])
    seen = []
    run_main(seen.extend, ["a", "--debug", "b"])
    assert seen == ["a", "b"]  # the flag never reaches the script's parser


@pytest.mark.parametrize("script, argv", [
    ("convert", ["./no-such-source", "out"]),
    ("push_to_hub", ["./no-such-run", "me/name"]),
    ("visualize", ["--model", "./no-such-model", "--output_dir", "figs"]),
    ("finetune", ["--model", "./no-such-model", "--output_dir", "ft"]),
])
def test_scripts_name_a_mistyped_path_in_one_line(script, argv, tmp_path, monkeypatch, capsys, no_hub):
    monkeypatch.chdir(tmp_path)
    module = _script(script)
    entry = module.main if script == "finetune" else (lambda a: module.main(module.parse_args(a)))
    with pytest.raises(SystemExit) as exit_:
        run_main(entry, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and len(err) == 1, err
    assert err[0].startswith("error: FileNotFoundError: ./no-such-") and "does not exist" in err[0]


def test_convert_script_prints_no_traceback(tmp_path):
    """The real `__main__` wiring, in a subprocess (--debug's traceback is checked in-process above)."""
    command = [sys.executable, str(ROOT / "scripts" / "convert.py"), "./missing-source", "out"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's hf_vision, whichever one is installed
    quiet = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert "error: FileNotFoundError: ./missing-source does not exist" in quiet.stderr


def test_one_line_counts_what_it_leaves_out():
    assert one_line(KeyError("k")) == "KeyError: 'k'"
    assert one_line(ValueError("a\n\nb\nc")) == "ValueError: a (+2 more lines; --debug shows all)"


# ---------------------------------------------------------------------------------------------------- ANSI codes


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_transformers_load_report_reaches_a_log_file_without_ansi(tmp_path, monkeypatch):
    """transformers colours its load report when *stdout* is a terminal, even if the log goes to a file."""
    monkeypatch.setattr(sys, "stdout", _Terminal())
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    previous = library.level
    library.setLevel(logging.WARNING)
    try:
        import transformers

        # Our own models hand transformers an already-checked state dict (no report); a transformers model
        # loaded without its head still prints transformers' coloured load report.
        config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=4, intermediate_size=64, num_labels=5)
        transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "ckpt")
        model_cls = transformers.ViTModel
        model_cls.from_pretrained(tmp_path / "ckpt")  # drops the head: a load report
        raw = log.getvalue()
        plain_logs()
        assert isinstance(handler.formatter, StripAnsi)
        log.seek(0), log.truncate()
        model_cls.from_pretrained(tmp_path / "ckpt")
        logging.getLogger("transformers.modeling_utils").warning("\x1b[31mred\x1b[0m %s", "\x1b[1mbold\x1b[0m")
        clean = log.getvalue()
    finally:
        library.removeHandler(handler)
        library.setLevel(previous)
    assert "LOAD REPORT" in raw and "\x1b[" in raw  # transformers colours the report's title even off a terminal
    assert "LOAD REPORT" in clean and "red bold" in clean and "\x1b" not in clean
