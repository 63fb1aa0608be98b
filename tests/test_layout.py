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


# ------------------------------------------------------------------------------------ layers inside hf_vision
# THE layer order of hf_vision (one place; the README's Layout section draws it). A module may import its own
# layer and the layers listed before it, never a later one. Each entry names module prefixes; the longest
# prefix decides. A new module must be placed here (test_every_hf_vision_module_has_a_layer says so).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("models", ("hf_vision.modeling",)),
    ("basics", ("hf_vision.paths", "hf_vision.presets", "hf_vision.auto", "hf_vision.optimize", "hf_vision.cli",
                "hf_vision.overrides", "hf_vision.recipes")),
    ("io", ("hf_vision.data", "hf_vision.convert", "hf_vision.model_card", "hf_vision.hub", "hf_vision.publish")),
    ("analysis", ("hf_vision.analysis",)),  # the papers' figures; pre-training draws its reconstruction grid with it
    ("training", ("hf_vision.training",)),
    ("tools", ("hf_vision.benchmark", "hf_vision.quickstart", "hf_vision.ablation")),
)
# The package root re-exports the public API; it sits above every layer and nothing inside hf_vision imports it.
ROOT_PACKAGE = "hf_vision"
# Entry modules of one layer that must not lean on each other: what they share lives in a module below them.
PEERS = (("hf_vision.training.pretrain", "hf_vision.training.finetune"),)
# What `import hf_vision` must not pull in (each costs seconds or belongs to a job, not to loading a model).
NOT_ON_IMPORT = ("hf_vision.training", "hf_vision.analysis", "hf_vision.benchmark", "hf_vision.ablation",
                 "matplotlib", "timm", "datasets", "sklearn")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "modeling":  # installed as hf_vision.modeling (pyproject package-dir)
        parts = ("hf_vision", *parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


HF_VISION = {_module_name(p): p for p in sorted((ROOT / "hf_vision").rglob("*.py"))}


def _is_module(name: str) -> bool:
    return name in HF_VISION or name.startswith("hf_vision.modeling")


def _hf_vision_imports(name: str) -> set[str]:
    """Every hf_vision module that `name` imports (at module level or inside functions), resolved to module names;
    `from pkg import x` counts as importing pkg.x when x is a module, else pkg itself."""
    path = HF_VISION[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t == ROOT_PACKAGE or t.startswith(ROOT_PACKAGE + "."))
    found.discard(name)
    return found


def _layer(name: str) -> int | None:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def test_every_hf_vision_module_has_a_layer():
    missing = [name for name in HF_VISION if name != ROOT_PACKAGE and _layer(name) is None]
    assert not missing, f"place these modules in tests/test_layout.py LAYERS: {missing}"


@pytest.mark.parametrize("name", sorted(n for n in HF_VISION if n != ROOT_PACKAGE))
def test_hf_vision_imports_only_its_own_layer_and_lower(name):
    own = _layer(name)
    assert own is not None, f"place {name} in tests/test_layout.py LAYERS"
    for target in sorted(_hf_vision_imports(name)):
        assert target != ROOT_PACKAGE, f"{name} imports the package root (import from the module that defines it)"
        layer = _layer(target)
        assert layer is not None and layer <= own, (
            f"{name} (layer {LAYERS[own][0]!r}) imports {target} (layer {LAYERS[layer][0]!r} is above it)")


def test_peer_entry_modules_do_not_import_each_other():
    for a, b in PEERS:
        assert b not in _hf_vision_imports(a) and a not in _hf_vision_imports(b), f"{a} <-> {b}"


def _unit(name: str) -> str:
    """A top-level part of hf_vision (hf_vision.data, hf_vision.hub, ...): the grain at which cycles are refused."""
    return ".".join(name.split(".")[:2])


def test_no_import_cycles_between_hf_vision_parts():
    """Layers forbid upward imports; this also refuses cycles between parts of one layer (data <-> hub, ...)."""
    graph: dict[str, set[str]] = {}
    for name in HF_VISION:
        if name != ROOT_PACKAGE:
            graph.setdefault(_unit(name), set()).update(
                _unit(t) for t in _hf_vision_imports(name) if t != ROOT_PACKAGE and _unit(t) != _unit(name))
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path[path.index(nxt):] + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_import_hf_vision_is_light():
    """`import hf_vision` registers the models and nothing more: no training, analysis or benchmark code, no
    plotting or dataset library (not a timed test: what is imported is what costs)."""
    import subprocess

    code = ("import sys, hf_vision; heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY} "
            "or any(m == p or m.startswith(p + '.') for p in {PARTS})]; print(sorted(heavy))")
    heavy = sorted({p for p in NOT_ON_IMPORT if "." not in p})
    parts = sorted(p for p in NOT_ON_IMPORT if "." in p)
    code = code.replace("{HEAVY}", repr(set(heavy))).replace("{PARTS}", repr(parts))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"import hf_vision pulled in {result.stdout.strip()}"
