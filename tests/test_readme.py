"""Every README code block runs as written on a fresh machine, or says why it cannot.

Python blocks run in order in one fresh interpreter, each in its own namespace, from an empty temporary folder
(so a block may use a folder that an earlier block saved, as a reader following the page would). A block that
needs the network or a long run is preceded by `<!-- readme-test: KIND: reason -->` (KIND: network, long, ci);
the reason is checked against the block. A single line that needs a downloaded file ends with `# needs: what`
and is the only thing left out. Every python block, run or not, must define every name it uses.
"""
from __future__ import annotations

import ast
import builtins
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KINDS = ("network", "long", "ci")
MARKER = re.compile(r"<!--\s*readme-test:\s*(\w+):\s*(.*?)\s*-->")
LINE_NEEDS = re.compile(r"#\s*needs:\s*\S")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    kind: str | None = None
    reason: str = ""

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of `text` with the readme-test marker on the line before each, if any."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = textwrap.dedent("\n".join(line[len(indent):] if line.startswith(indent) else line
                                         for line in lines[i + 1:end]))
        block = Block(lang, code, i + 1)
        marker = MARKER.search(lines[i - 1]) if i else None
        if marker:
            block.kind, block.reason = marker.group(1), marker.group(2)
        blocks.append(block)
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def _runnable(code: str) -> str:
    """The block with each `# needs: ...` line left out (replaced by `pass` at its indentation)."""
    return "\n".join(re.sub(r"^(\s*).*$", r"\1pass", line) if LINE_NEEDS.search(line) else line
                     for line in code.splitlines())


def undefined_names(code: str) -> set[str]:
    """Names a snippet reads but never imports or assigns (module level and functions alike: snippets are flat)."""
    tree = ast.parse(code)
    bound, used = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return used - bound


def test_readme_has_the_blocks_this_test_expects():
    assert len([b for b in BLOCKS if b.lang == "python"]) >= 4 and len(BLOCKS) >= 10
    assert all(b.lang in ("python", "bash", "") for b in BLOCKS), [b.id for b in BLOCKS]
    # Every marker sits right before a fence (a stray one would silently mark nothing).
    lines = README.read_text().splitlines()
    for n, line in enumerate(lines):
        if MARKER.search(line):
            assert n + 1 < len(lines) and lines[n + 1].strip().startswith("```"), f"README.md:{n + 1}: marker not before a block"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_defines_every_name_it_uses(block):
    assert not undefined_names(block.code), f"{block.id} uses undefined names {sorted(undefined_names(block.code))}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind], ids=lambda b: b.id)
def test_skipped_block_has_a_true_reason(block):
    assert block.kind in KINDS, f"{block.id}: readme-test kind {block.kind!r} is not one of {KINDS}"
    assert len(block.reason) > 10, f"{block.id}: say why the block is not run"
    if block.kind == "network":
        remote = re.search(r"pretrained=True|(from_pretrained\(|model=)\"[\w.-]+/[\w.-]+\"|push_to_hub|\.npz|\.pth",
                           block.code)
        assert remote, f"{block.id} is marked network but fetches nothing"
    elif block.kind == "ci":
        ci = (ROOT / ".ci" / "run").read_text()
        assert "README.md" in ci and "python -m pytest" in block.code, f"{block.id}: .ci/run must run this block"
    else:  # long: runs a training, benchmark or drawing script of ours that exists
        scripts = re.findall(r"scripts/(\w+\.py)", block.code)
        assert scripts, f"{block.id} is marked long but runs no script"
        for script in scripts:
            assert (ROOT / "scripts" / script).is_file(), f"{block.id}: scripts/{script} does not exist"


def test_ci_runs_the_readme_test_command_verbatim():
    """.ci/run picks README command 2 with this pattern and runs it as written; exactly one line must match."""
    ci = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -E '([^']+)' README\.md", ci).group(1)
    matches = [line for line in README.read_text().splitlines() if re.search(pattern, line)]
    assert matches == ['pip install torch==2.14.1 torchvision==0.29.1 -e ".[test]" && python -m pytest -q -n 2']
    assert "exit code 5" in ci and "venv" in ci


_RUNNER = textwrap.dedent("""
    import json, os, sys, time, traceback
    results = []
    for index, code in enumerate(json.load(open(sys.argv[1]))):
        start = time.perf_counter()
        try:
            exec(compile(code, "<README block %d>" % index, "exec"), {"__name__": "__main__"})
            error = None
        except BaseException:
            error = traceback.format_exc(limit=-3)
        results.append({"error": error, "seconds": round(time.perf_counter() - start, 1)})
    print(json.dumps(results))
""")


def test_python_blocks_run_as_written(tmp_path):
    blocks = [b for b in BLOCKS if b.lang == "python" and b.kind is None]
    assert len(blocks) >= 3
    (tmp_path / "blocks.json").write_text(json.dumps([_runnable(b.code) for b in blocks]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp_path / "blocks.json")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    failures = [f"{b.id} ({r['seconds']} s):\n{r['error']}" for b, r in zip(blocks, reports) if r["error"]]
    assert not failures, "\n".join(failures)
