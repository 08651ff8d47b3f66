"""What PyPI and pip will see, checked without building anything: the license, the long
description, the classifiers against requires-python, the tested lower bounds and the
changelog. Each check is a function that is also run on a wrong input, so that a check
which could never fail would itself fail here."""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomllib is 3.11's; on 3.10 tomli is the same parser, if it is installed
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
OLDEST = ROOT / ".ci" / "oldest.txt"

# an inline link or image whose target is neither absolute nor an anchor, and a reference
# definition ("[name]: target") likewise
RELATIVE_INLINE = re.compile(r"\]\([ \t]*(?=\S)(?!<?(?:https?://|#))")
RELATIVE_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(?=\S)(?!<?(?:https?://|#))", re.M)
PYTHON_CLASSIFIER = re.compile(r"Programming Language :: Python :: (\d+\.\d+)$")


def project() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        table: dict[str, Any] = tomllib.load(f)["project"]
    return table


# -- the checks -------------------------------------------------------------------------


def license_problems(meta: dict[str, Any], root: Path) -> list[str]:
    """The license field, the license files and the LICENSE text agree on MIT."""
    problems = []
    field = meta.get("license")
    name = field.get("text") if isinstance(field, dict) else field
    if name != "MIT":
        problems.append(f"license is {field!r}, not MIT")
    text = (root / "LICENSE").read_text() if (root / "LICENSE").is_file() else ""
    if not text:
        problems.append("no LICENSE file")
    elif not text.startswith("MIT License") or "Permission is hereby granted" not in text:
        problems.append("LICENSE is not the MIT license")
    elif "Copyright (c) 2026 the dtlspipe authors" not in text:
        problems.append("LICENSE does not name the copyright holders")
    globs = meta.get("license-files", [])
    if not any(fnmatch.fnmatch("LICENSE", g) for g in globs):
        problems.append(f"license-files {globs!r} leaves LICENSE out of the wheel")
    return problems


def relative_links(markdown: str) -> list[str]:
    """Lines with a link that PyPI's page could not follow (relative to the repository)."""
    found = [m.start() for m in RELATIVE_INLINE.finditer(markdown)]
    found += [m.start() for m in RELATIVE_REFERENCE.finditer(markdown)]
    lines = markdown.splitlines()
    return [lines[markdown.count("\n", 0, at)] for at in sorted(found)]


def classifier_problems(classifiers: list[str], requires_python: str) -> list[str]:
    """Each Python version named by a classifier is admitted by requires-python, and the
    oldest version requires-python admits is named."""
    admitted = SpecifierSet(requires_python)
    versions = [m.group(1) for c in classifiers if (m := PYTHON_CLASSIFIER.match(c))]
    problems = [
        f"Python {v} is not admitted by {requires_python}"
        for v in versions
        if not admitted.contains(f"{v}.0")
    ]
    oldest = next((f"3.{n}" for n in range(30) if admitted.contains(f"3.{n}.0")), None)
    if oldest not in versions:
        problems.append(f"no classifier for Python {oldest}, the oldest admitted")
    return problems


def lower_bounds(dependencies: list[str]) -> dict[str, Version]:
    """Each dependency's >= bound, by canonical name."""
    bounds = {}
    for line in dependencies:
        req = Requirement(line)
        for spec in req.specifier:
            if spec.operator == ">=":
                bounds[canonicalize_name(req.name)] = Version(spec.version)
    return bounds


def pins(constraints: str) -> dict[str, Version]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found = {}
    for raw in constraints.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name.strip())] = Version(version.strip())
    return found


def changelog_has(changelog: str, version: str) -> bool:
    """A second-level heading for the version, Keep a Changelog style (## 0.1.0 or
    ## [0.1.0], anything after it)."""
    heading = re.compile(rf"^## \[?{re.escape(version)}\]?(\s|$)", re.MULTILINE)
    return heading.search(changelog) is not None


# -- on this project ---------------------------------------------------------------------


def test_license_is_mit_everywhere() -> None:
    assert license_problems(project(), ROOT) == []


def test_readme_has_no_relative_links() -> None:
    readme = project()["readme"]
    path = ROOT / (readme if isinstance(readme, str) else readme["file"])
    assert path.is_file(), path
    assert relative_links(path.read_text()) == []


def test_classifiers_match_requires_python() -> None:
    meta = project()
    assert classifier_problems(meta["classifiers"], meta["requires-python"]) == []


def test_oldest_pins_are_the_lower_bounds() -> None:
    bounds = lower_bounds(project()["dependencies"])
    assert bounds, "no lower bound in dependencies"
    assert pins(OLDEST.read_text()) == bounds


def test_changelog_and_modules_have_the_version() -> None:
    version = project()["version"]
    assert changelog_has((ROOT / "CHANGELOG.md").read_text(), version)
    for module in ("dtls/__init__.py", "dtlspipe/__init__.py"):
        assert f'__version__ = "{version}"' in (ROOT / module).read_text(), module


# -- the checks can fail -----------------------------------------------------------------


def test_license_check_fails_on_a_mismatch(tmp_path: Path) -> None:
    good = {"license": {"text": "MIT"}, "license-files": ["LICEN[CS]E*"]}
    assert license_problems(good, tmp_path) == ["no LICENSE file"]
    (tmp_path / "LICENSE").write_text((ROOT / "LICENSE").read_text())
    assert license_problems(good, tmp_path) == []
    assert license_problems({**good, "license": "MIT"}, tmp_path) == []
    assert license_problems({**good, "license": {"text": "BSD-2-Clause"}}, tmp_path)
    assert license_problems({**good, "license-files": ["COPYING"]}, tmp_path)
    (tmp_path / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n")
    assert license_problems(good, tmp_path) == ["LICENSE is not the MIT license"]


@pytest.mark.parametrize(
    "markdown",
    [
        "See [the manual](docs/manual.md).",
        "![plot](docs/bench/rate-loss.svg)",
        "Up: [README](../README.md)",
        "[manual]: docs/manual.md",
        "[x](<docs/a b.md>)",
        "[x]( docs/manual.md )",
    ],
)
def test_link_check_finds_relative_links(markdown: str) -> None:
    assert relative_links(f"# Title\n\ntext\n{markdown}\n") == [markdown]


def test_link_check_passes_absolute_links_and_anchors() -> None:
    markdown = (
        "[a](https://example.org/x) [b](http://example.org) [c](#install)\n"
        "[d]: https://example.org/d\n"
        "[e]( https://example.org/e ) [f](<https://example.org/f>)\n"
    )
    assert relative_links(markdown) == []


def test_classifier_check_fails_outside_requires_python() -> None:
    named = [f"Programming Language :: Python :: 3.{n}" for n in (10, 11, 12, 13)]
    assert classifier_problems(named, ">=3.10") == []
    assert classifier_problems(["Programming Language :: Python :: 3.9", *named], ">=3.10") == [
        "Python 3.9 is not admitted by >=3.10"
    ]
    assert classifier_problems(named, ">=3.11") == ["Python 3.10 is not admitted by >=3.11"]
    assert classifier_problems(named[1:], ">=3.10") == [
        "no classifier for Python 3.10, the oldest admitted"
    ]


def test_pins_check_fails_on_a_moved_bound() -> None:
    deps = ["cryptography>=41", "anyio>=4.10", "uvloop>=0.17; platform_system != 'Windows'"]
    assert pins("cryptography==41.0.0\nanyio==4.10.0  # note\nuvloop==0.17.0\n") == lower_bounds(
        deps
    )
    assert pins("cryptography==41.0.0\nanyio==4.7.0\nuvloop==0.17.0\n") != lower_bounds(deps)
    assert pins("cryptography==41.0.0\nanyio==4.10.0\n") != lower_bounds(deps)


def test_changelog_check_fails_without_the_version() -> None:
    assert changelog_has("# Changelog\n\n## 0.1.0 \u2013 unreleased\n", "0.1.0")
    assert changelog_has("# Changelog\n\n## [0.1.0] - 2027-01-01\n", "0.1.0")
    assert not changelog_has("# Changelog\n\n## 0.1.1 \u2013 unreleased\n", "0.1.0")
    assert not changelog_has("# Changelog\n\n## 0.1.0.post1\n", "0.1.0")
    assert not changelog_has("Mentions 0.1.0 in passing.\n", "0.1.0")
