"""Fresh interpreters that cannot import this project, built the same way in a virtualenv, a system Python and a
user install.

Rebuilding the import path from `sysconfig` (purelib) breaks in a virtualenv, whose purelib is the base
interpreter's; filtering the editable finder by name depends on setuptools' internals. Instead the child runs with
`-I -S` (no cwd, no PYTHONPATH, no .pth files, so no editable-install hook) and gets the parent's own import path
minus the project's folders; a meta-path finder then refuses the project's packages wherever they might still lie
(a regular, non-editable install in site-packages), so remote code that reached for them would fail loudly.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = ("hf_vision", "modeling", "tests")


def dependency_paths() -> list[str]:
    """This interpreter's import path (stdlib, venv, system and user site-packages) without the project's folders."""
    from transformers.utils import HF_MODULES_CACHE

    # The parent's remote-code cache would shadow the child's own transformers_modules package (the child appends
    # its cache last): left out by name, and so is any folder that holds a transformers_modules package now.
    modules_cache = Path(HF_MODULES_CACHE).resolve()
    keep = []
    for entry in sys.path:
        if entry in ("", "."):
            continue
        path = Path(entry).resolve()
        if path == ROOT or ROOT in path.parents or not path.exists():
            continue
        if path == modules_cache or (path / "transformers_modules").is_dir():
            continue
        keep.append(str(path))
    return list(dict.fromkeys(keep))


def isolated_preamble(*, own_path: bool = False) -> str:
    """Code that sets up the child's import path and proves the project's packages cannot be imported.

    `own_path`: keep the child interpreter's own import path (another virtualenv, whose packages must win), minus
    the current directory and the project's folders, instead of the parent's.
    """
    set_path = (f"sys.path[:] = [p for p in sys.path if p not in ('', '.') and not p.startswith({str(ROOT)!r})]"
                if own_path else f"sys.path[:] = {dependency_paths()!r}")
    return textwrap.dedent(f"""
        import sys
        {set_path}
        class _HideProject:  # refuse the project even where a regular install left it in site-packages
            @staticmethod
            def find_spec(name, path=None, target=None):
                if name.partition(".")[0] in {HIDDEN!r}:
                    raise ModuleNotFoundError(name + " is hidden from this interpreter", name=name)
                return None
        sys.meta_path.insert(0, _HideProject)
        for _name in {HIDDEN!r}:
            assert _name not in sys.modules, _name + " was imported at startup"
            try:
                __import__(_name)
            except ModuleNotFoundError:
                pass
            else:
                raise AssertionError(_name + " is importable")
    """)


def isolated_command(code: str, *args: str, python: str | None = None) -> list[str]:
    """argv running `code` (plus `args` as sys.argv[1:]) in a fresh interpreter that cannot import this project.

    `python`: another virtualenv's interpreter; it starts with its own `site` (its packages, then the paths its
    .pth files add), still with no cwd, PYTHONPATH or user site (-I).
    """
    if python is not None:
        return [python, "-I", "-c", isolated_preamble(own_path=True) + textwrap.dedent(code), *args]
    return [sys.executable, "-I", "-S", "-c", isolated_preamble() + textwrap.dedent(code), *args]
