"""The transformers floor (modeling/requirements.py): saved checkpoints of every family run as remote code in a
virtualenv holding exactly that transformers version, and older versions get a clear ImportError.

The floor venv is built once into ~/.cache/hf_vision/test-envs/transformers-<floor> (HF_VISION_TEST_ENVS moves it):
a plain venv whose .pth file appends this interpreter's dependency paths, so only transformers and the packages
that version pins differently (e.g. an older huggingface_hub) are installed from PyPI into it, ahead of ours.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers

from hf_vision.modeling import requirements

from .cases import CASES
from .isolation import dependency_paths, isolated_command

FAMILIES = ("vit-cls", "hybrid-cls", "mae-pretraining", "swin-cls")
_OFFLINE = ("NewConnectionError", "ConnectionError", "Temporary failure in name resolution", "Network is unreachable",
            "No matching distribution found", "Could not find a version")


def floor_env() -> Path:
    """The cached venv with transformers==MIN_TRANSFORMERS (built on first use); skips if PyPI is unreachable."""
    root = Path(os.environ.get("HF_VISION_TEST_ENVS", Path.home() / ".cache" / "hf_vision" / "test-envs"))
    env = root / f"transformers-{requirements.MIN_TRANSFORMERS}"
    python, done = env / "bin" / "python", env / "complete"
    if not done.exists():  # absent or half-built by an interrupted run: build from scratch
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # appended after the venv's own site-packages: its transformers (and pins) win, the rest comes from here
    Path(site, "hf_vision_test_deps.pth").write_text("\n".join(dependency_paths()) + "\n")
    if not done.exists():
        pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                              f"transformers=={requirements.MIN_TRANSFORMERS}"], capture_output=True, text=True)
        if pip.returncode:
            if any(sign in pip.stdout + pip.stderr for sign in _OFFLINE):
                pytest.skip(f"pip cannot reach PyPI to build the floor venv: {pip.stderr.strip()[-300:]}")
            raise AssertionError(f"pip failed building {env}:\n{pip.stdout}\n{pip.stderr}")
        done.write_text(requirements.MIN_TRANSFORMERS + "\n")
    return python


_LOAD = textwrap.dedent("""
    import json, os, sys, torch, transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    folder = sys.argv[1]
    result = {"version": transformers.__version__}
    for name in sorted(os.listdir(folder)):
        ckpt = os.path.join(folder, name)
        probe = torch.load(os.path.join(ckpt, "probe.pt"))
        try:
            model = getattr(transformers, probe["auto"]).from_pretrained(ckpt, trust_remote_code=True).eval()
        except ModuleNotFoundError:  # seen once under -n 2 (not reproduced alone): say where the package was found
            package = sys.modules.get("transformers_modules")
            where = list(getattr(package, "__path__", []))
            print("transformers_modules:", where, {p: sorted(os.listdir(p)) for p in where if os.path.isdir(p)},
                  "sys.path:", sys.path, file=sys.stderr)
            raise
        with torch.no_grad():
            out = model(pixel_values=probe["x"], **probe["extra"])
        result[name] = {k: (out[k] - v).abs().max().item() for k, v in probe["ref"].items()}
    assert "hf_vision" not in sys.modules and "modeling" not in sys.modules
    print(json.dumps(result))
""")


def _save_checkpoints(folder: Path) -> None:
    for case in CASES:
        if case.id not in FAMILIES:
            continue
        torch.manual_seed(0)
        model = case.model_cls(case.make_config()).eval()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, *case.image_size, generator=gen)
        extra = case.make_inputs(model.config, 2, gen)
        with torch.no_grad():
            ref = model(pixel_values=x, **extra)
        model.save_pretrained(folder / case.id)
        torch.save({"x": x, "extra": extra, "auto": case.auto_class,
                    "ref": {k: v for k, v in ref.items() if isinstance(v, torch.Tensor)}}, folder / case.id / "probe.pt")


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_remote_code_runs_on_the_floor_and_the_newest_transformers(tmp_path):
    python = floor_env()
    _save_checkpoints(tmp_path / "ckpts")
    assert {json.loads((tmp_path / "ckpts" / f / "config.json").read_text())["hf_vision_min_transformers"]
            for f in FAMILIES} == {requirements.MIN_TRANSFORMERS}
    for interpreter, version in ((str(python), requirements.MIN_TRANSFORMERS), (None, transformers.__version__)):
        proc = _run(isolated_command(_LOAD, str(tmp_path / "ckpts"), python=interpreter), tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result.pop("version") == version
        assert set(result) == set(FAMILIES)
        for family, diffs in result.items():
            assert diffs and max(diffs.values()) < 1e-5, (version, family, diffs)


def test_older_transformers_gets_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(requirements, "MIN_TRANSFORMERS", "6.0.0")
    with pytest.raises(ImportError, match=rf"transformers>=6\.0\.0.*transformers=={transformers.__version__}"):
        requirements.require_transformers()
    requirements.require_transformers("5.0.0")  # the installed version passes a lower floor
    assert requirements.release("5.10.1.dev0") == (5, 10, 1)
    assert requirements.release("5.9.0") < requirements.release("5.10.1") < requirements.release("5.24")


def test_shipped_code_checks_the_floor_at_import(tmp_path):
    """A checkpoint whose floor is above the installed transformers fails to load, naming both versions."""
    case = next(c for c in CASES if c.id == "vit-cls")
    model = case.model_cls(case.make_config())
    model.save_pretrained(tmp_path / "ckpt")
    shipped = tmp_path / "ckpt" / "requirements.py"
    text = shipped.read_text()
    assert f'MIN_TRANSFORMERS = "{requirements.MIN_TRANSFORMERS}"' in text
    shipped.write_text(text.replace(f'MIN_TRANSFORMERS = "{requirements.MIN_TRANSFORMERS}"', 'MIN_TRANSFORMERS = "6.0.0"'))
    code = """
        import sys
        from transformers import AutoModel
        try:
            AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
        except ImportError as error:
            print("ImportError:", error)
    """
    proc = _run(isolated_command(code, str(tmp_path / "ckpt")), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"needs transformers>=6.0.0, but transformers=={transformers.__version__} is installed" in proc.stdout


def test_pyproject_declares_the_same_floor():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert f"transformers>={requirements.MIN_TRANSFORMERS},<6" in pyproject["project"]["dependencies"]
