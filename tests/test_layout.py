"""House rules that keep modeling/ portable as remote code and imports flowing one way."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELING = sorted((ROOT / "modeling").rglob("*.py"))
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) for every import statement in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


@pytest.mark.parametrize("path", MODELING, ids=lambda p: str(p.relative_to(ROOT)))
def test_modeling_depends_on_torch_and_transformers_only(path):
    for level, module in _imports(path):
        if level:
            continue
        top = module.split(".")[0]
        assert top in STDLIB or top in {"torch", "transformers"}, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", MODELING, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_imports_name_files_not_packages(path):
    """Remote code is flattened into one folder, so every relative import must name a module file."""
    for level, module in _imports(path):
        if not level:
            continue
        base = path.parent
        for _ in range(level - 1):
            base = base.parent
        target = base.joinpath(*module.split(".")) if module else base
        assert target.with_suffix(".py").is_file(), f"{path.name}: relative import of {'.' * level}{module} is not a file"


def test_modeling_basenames_are_unique():
    names = [p.name for p in MODELING if p.name != "__init__.py"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_hf_vision_never_imports_scripts():
    for path in (ROOT / "hf_vision").rglob("*.py"):
        assert all(not module.startswith("scripts") for _, module in _imports(path)), path


@pytest.mark.parametrize("path", sorted((ROOT / "scripts").glob("*.py")), ids=lambda p: p.name)
def test_scripts_are_thin_and_say_how_to_run(path):
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    opening = "\n".join(doc.splitlines()[:4])
    assert f"scripts/{path.name}" in opening, f"{path.name}: the docstring's first lines must give the run command"
    assert "parse_args" in path.read_text()
    assert len(path.read_text().splitlines()) < 200, f"{path.name} is not thin"


def test_pyproject_packages_cover_every_package_folder():
    """The explicit `packages` list must name every folder with an __init__.py, or a wheel silently lacks it."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    assert setuptools["package-dir"] == {"hf_vision.modeling": "modeling"}
    found = set()
    for top, name in (("hf_vision", "hf_vision"), ("modeling", "hf_vision.modeling")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"


@pytest.mark.parametrize("path", sorted(p for top in ("hf_vision", "scripts", "tests", "modeling")
                                        for p in (ROOT / top).rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_imports_a_top_level_modeling(path):
    """`modeling` is installed as hf_vision.modeling only; `import modeling` would find a user's modeling.py."""
    for level, module in _imports(path):
        assert level or module.split(".")[0] != "modeling", f"{path.name} imports {module}"


def test_a_modeling_py_in_the_working_directory_does_not_break_import(tmp_path):
    import subprocess

    (tmp_path / "modeling.py").write_text("raise RuntimeError('the user module was imported')\n")
    code = "import hf_vision; m = hf_vision.ViTModel; print(m.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "hf_vision.modeling.vit.modeling_vit"
