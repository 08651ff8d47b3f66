"""The log lines and error messages docs/logs.md quotes are ones the program can print.

Every message the docs quote in "The main lines" and "The key log" is matched against
the format strings of the code (log calls' formats, f-strings and plain strings in
dtlspipe/ and dtls/, read with ast): a quoted line must be one to three formats filled in
(a message, a reason appended to it, the ``dtlspipe: `` of an error of use). Uppercase
placeholders of the docs (A, B, REASON, SERVER, FILE, N...) stand for any filled-in value.
A reworded message in the code, or a doc line no code prints, fails here.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "logs.md"
SOURCES = [*sorted((ROOT / "dtlspipe").glob("*.py")), *sorted((ROOT / "dtls").rglob("*.py"))]
#: the sections whose quotes are messages (the rest quotes options and commands)
SECTIONS = ("## The main lines", "## The key log")
MIN_LITERAL = 8  # a format with less fixed text than this proves nothing


def _pattern(parts: list[str | None]) -> str:
    """A regex from fixed text (str) and filled-in values (None)."""
    return "".join(".+?" if p is None else re.escape(p) for p in parts)


def _percent_parts(text: str) -> list[str | None]:
    parts: list[str | None] = []
    for i, piece in enumerate(re.split(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgx]", text)):
        if i:
            parts.append(None)
        parts.append(piece.replace("%%", "%"))
    return parts


def _formats(tree: ast.AST) -> list[list[str | None]]:
    out: list[list[str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts: list[str | None] = []
            for value in node.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    parts.append(value.value)
                else:
                    parts.append(None)
            out.append(parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(_percent_parts(node.value))
    return out


@functools.cache
def code_formats() -> tuple[str, ...]:
    """Regexes of the formats with enough fixed text to tell a message."""
    seen: set[str] = set()
    for path in SOURCES:
        for parts in _formats(ast.parse(path.read_text(encoding="utf-8"))):
            literal = "".join(p for p in parts if p is not None)
            if len(literal.strip()) >= MIN_LITERAL:
                seen.add(_pattern(parts))
    return tuple(sorted(seen))


@functools.cache
def code_texts() -> tuple[str, ...]:
    """The fixed pieces of every format."""
    texts: set[str] = set()
    for path in SOURCES:
        for parts in _formats(ast.parse(path.read_text(encoding="utf-8"))):
            texts.update(p for p in parts if p)
    return tuple(sorted(texts))


@functools.cache
def chained() -> re.Pattern[str]:
    """One to three formats in a row: a message, or a prefix, a message and its reason
    (``dtlspipe: `` + ``key log file PATH`` + `` may be read ...``)."""
    either = "|".join(f"(?:{p})" for p in code_formats())
    return re.compile(f"(?:{either}){{1,3}}", re.DOTALL)


def printable(line: str) -> bool:
    """Some formats filled in make ``line``; a short fragment quoted from a longer line
    (``handshake started from``) is printable if a format's fixed text contains it."""
    line = re.sub(r"^(?:DEBUG|INFO|WARNING|ERROR) ", "", line)  # the level, as -v logs it
    if chained().fullmatch(line):
        return True
    return len(line.split()) < 4 and any(line in text for text in code_texts())


def quoted_messages() -> list[str]:
    """Code spans and code-block lines of the message sections that read as messages."""
    text = DOC.read_text(encoding="utf-8")
    chunks = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        chunks.append(text[start : end if end >= 0 else len(text)])
    out: list[str] = []
    for chunk in chunks:
        blocks = re.findall(r"```\n(.*?)```", chunk, flags=re.DOTALL)
        for block in blocks:
            out += [line for line in block.splitlines() if line.strip()]
        prose = re.sub(r"```\n.*?```", "", chunk, flags=re.DOTALL)
        for span in re.findall(r"`([^`\n]+)`", prose.replace("\n", " ")):
            out.append(span)
    messages = []
    for m in out:
        m = " ".join(m.split())
        words = m.split()
        commands = ("-", "dtlspipe ", "kill ", "tshark", "tcpdump", "journalctl")
        if len(words) < 3 or m.startswith(commands):
            continue  # an option, a command, a fragment
        if "..." in m or m.startswith(("summary:", "final summary:")):
            continue  # elided (the summary line has its own test)
        if re.fullmatch(r"[\w.:-]+=\S+.*", m):
            continue  # key=value fields
        messages.append(m)
    return messages


MESSAGES = quoted_messages()


def test_the_sections_quote_messages() -> None:
    assert len(MESSAGES) >= 25, MESSAGES  # the extraction still finds the docs' lines


@pytest.mark.parametrize("message", MESSAGES)
def test_each_quoted_message_is_printable(message: str) -> None:
    assert printable(message), f"docs/logs.md quotes a message no format prints: {message!r}"


@pytest.mark.parametrize(
    "reworded",
    [
        "handshake from A failled: REASON",
        "server listening at 0.0.0.0:2815, forwarding to 127.0.0.1:514",
        "no answer from SERVER after 10 s: server down, wrong port or filtered?",
    ],
)
def test_a_reworded_message_is_caught(reworded: str) -> None:
    assert not printable(reworded)
