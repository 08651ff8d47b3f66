"""The library snippets of README.md and docs/library.md run as written (in a fresh
interpreter, on loopback) and print what they claim to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def first_python_block(path: Path, after: str) -> str:
    text = path.read_text().split(after, 1)[1]
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, f"no python block after {after!r} in {path.name}"
    return match.group(1)


@pytest.mark.parametrize(
    ("doc", "heading"),
    [("README.md", "## Using it as a Python library"), ("docs/library.md", "## A client and")],
)
def test_snippet_runs(doc: str, heading: str) -> None:
    code = first_python_block(ROOT / doc, heading)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("b'hello'"), done.stdout
