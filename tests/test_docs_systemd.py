"""docs/systemd.md stays honest: the unit files in its ```ini blocks run real command lines.

Each ``dtlspipe`` command line in the units is taken apart the way systemd does it
(systemd.service(5) "Command lines", systemd.syntax(7) "Quoting": words, quotes only at
the start of a word, ``$$`` and ``${VAR}``), a ``/bin/sh -c`` wrapper is run for real with
a stand-in for the program and a credentials directory, and what the program would get
must parse with :func:`dtlspipe.options.parse_args` and carry the key in the environment,
never in a ``-psk`` argument. Where ``systemd-analyze`` is installed, every unit (with its
drop-ins) must also pass ``systemd-analyze verify`` without a complaint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dtlspipe.options import Command, Options, parse_args

DOC = Path(__file__).resolve().parent.parent / "docs" / "systemd.md"
PROGRAM = "/opt/dtlspipe/bin/dtlspipe"  # where the page installs it
KEY = "5c7d0a9e31f4b8c26d0e17a3f9b4c5d2"
SHELLS = ("/bin/sh", "/usr/bin/sh")
UNIT_DIR = "/etc/systemd/system/"


@dataclass(frozen=True)
class Unit:
    path: str  # as the block's first line names it, e.g. /etc/systemd/system/x.service
    text: str
    settings: tuple[tuple[str, str, str], ...]  # (section, key, value), in order

    @property
    def name(self) -> str:
        return self.path.removeprefix(UNIT_DIR)

    @property
    def is_dropin(self) -> bool:
        return ".service.d/" in self.path

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for s, k, v in self.settings if s == section and k == key]


def _parse_unit(text: str) -> Unit:
    first = text.splitlines()[0]
    match = re.fullmatch(r"# (/etc/systemd/system/[\w@.-]+\.service(?:\.d/[\w.-]+\.conf)?)", first)
    assert match, f"an ini block must start with '# {UNIT_DIR}NAME.service': {first!r}"
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):  # systemd merges a line ending in a backslash with the next
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a unit ends in a continuation line"
    settings, section = [], ""
    for line in logical:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, eq, value = line.partition("=")
        assert eq and section, f"not a setting in a section: {line!r}"
        settings.append((section, key.strip(), value.strip()))
    return Unit(match.group(1), text, tuple(settings))


def _units() -> list[Unit]:
    blocks = re.findall(r"^```ini\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)
    return [_parse_unit(block) for block in blocks]


UNITS = _units()
SERVICES = [u for u in UNITS if not u.is_dropin]


def _words(value: str) -> list[tuple[str, bool]]:
    """systemd.syntax(7) quoting: (word, was quoted). Quotes open only at the start of a
    word and must close at its end; C escapes are refused, so plain text means itself."""
    assert "\\" not in value, "a backslash in a command line: systemd reads C escapes"
    words, i = [], 0
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        if value[i] in "'\"":
            end = value.find(value[i], i + 1)
            assert end > 0, f"unbalanced quote in {value!r}"
            assert end + 1 == len(value) or value[end + 1].isspace(), (
                f"a quote must close at the end of a word: {value!r}"
            )
            words.append((value[i + 1 : end], True))
            i = end + 1
            continue
        end = i
        while end < len(value) and not value[end].isspace():
            assert value[end] not in "'\"", f"a quote inside a word is not systemd's: {value!r}"
            end += 1
        words.append((value[i:end], False))
        i = end
    return words


def _systemd_argv(value: str, env: dict[str, str]) -> list[str]:
    """An Exec*= value as systemd turns it into argv (systemd.service(5), Command lines)."""
    value = value.lstrip("-@:+!")  # the prefixes that change how it runs, not what
    assert "%" not in value, "specifiers are not emulated here"
    argv: list[str] = []
    for word, quoted in _words(value):
        if not quoted and re.fullmatch(r"\$\w+", word):  # $FOO alone: split at whitespace
            argv += env.get(word[1:], "").split()
            continue
        argv.append(
            re.sub(
                r"\$(\$|\{(\w+)\})",
                lambda m: "$" if m.group(1) == "$" else env.get(m.group(2) or "", ""),
                word,
            )
        )
    return argv


STUB = """#!{python}
import json, os, sys
with open({out!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, f)
"""


def _run_wrapper(unit: Unit, argv: list[str], tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Run a ``/bin/sh -c SCRIPT`` ExecStart= for real, the program replaced by a stub
    that records its arguments and environment, with the unit's credentials in place."""
    assert len(argv) == 3 and argv[1] == "-c", f"expected {argv[0]} -c SCRIPT: {argv}"
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} is not here")
    script = argv[2]
    assert script.count(PROGRAM) == 1, f"the script must exec {PROGRAM} once: {script!r}"
    out = tmp_path / "recorded.json"
    stub = tmp_path / "dtlspipe-stub"
    stub.write_text(STUB.format(python=sys.executable, out=str(out)))
    stub.chmod(0o755)
    creds = tmp_path / "credentials"
    creds.mkdir()
    for spec in unit.values("LoadCredential"):
        ident = spec.partition(":")[0]
        (creds / ident).write_text(KEY + "\n")  # as `dtlspipe genpsk > FILE` leaves it
        (creds / ident).chmod(0o400)
    env = {"PATH": os.defpath, "CREDENTIALS_DIRECTORY": str(creds)}
    systemd_argv = _systemd_argv(unit.values("ExecStart")[0], env)
    assert systemd_argv[:2] == argv[:2]
    subprocess.run(
        [argv[0], "-c", systemd_argv[2].replace(PROGRAM, str(stub))],
        env=env,
        check=True,
        timeout=60,
    )
    recorded = json.loads(out.read_text())
    return recorded["argv"], recorded["env"]


def _invocation(unit: Unit, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The dtlspipe argv (without the program) and environment the unit's ExecStart= gives."""
    starts = unit.values("ExecStart")
    assert len(starts) == 1, f"{unit.name}: one ExecStart= line"
    argv = _systemd_argv(starts[0], {"CREDENTIALS_DIRECTORY": "/run/credentials/" + unit.name})
    if argv[0] == PROGRAM:
        return argv[1:], {"DTLSPIPE_PSK": KEY}
    assert argv[0] in SHELLS, f"{unit.name}: ExecStart= runs neither {PROGRAM} nor a shell"
    return _run_wrapper(unit, argv, tmp_path)


def test_the_page_has_units() -> None:
    names = {u.name for u in UNITS}
    assert len(SERVICES) >= 3, names
    for unit in UNITS:
        if unit.is_dropin:
            assert unit.name.partition(".d/")[0] in {s.name for s in SERVICES}


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_no_key_in_any_unit(unit: Unit) -> None:
    assert not re.search(r"(?<![\w-])--?psk(?![\w-])", unit.text), "-psk in a unit"
    assert KEY not in unit.text
    for value in unit.values("Environment"):
        assert "DTLSPIPE_PSK" not in value, "Environment= is shown by systemctl show"
        assert "SSLKEYLOGFILE" not in value
    assert not re.search(r"(?<![\w-])--?keylog\b", unit.text), "-keylog in a unit"


@pytest.mark.parametrize("unit", SERVICES, ids=[u.name for u in SERVICES])
def test_command_lines_parse(unit: Unit, tmp_path: Path) -> None:
    argv, environ = _invocation(unit, tmp_path)
    assert not any(re.fullmatch(r"--?psk(=.*)?", a) for a in argv), argv
    opts: Options = parse_args(argv, environ)
    assert opts.command in (Command.SERVER, Command.CLIENT, Command.HOPPINGCLIENT)
    assert opts.keylog is None
    if opts.keyfile is None:
        assert opts.psk == bytes.fromhex(KEY)  # from DTLSPIPE_PSK, the only way in
        assert environ.get("DTLSPIPE_PSK") == KEY
        sources = unit.values("EnvironmentFile") + unit.values("LoadCredential")
        sources += unit.values("LoadCredentialEncrypted")
        assert sources, f"{unit.name}: where does DTLSPIPE_PSK come from?"
    else:
        assert opts.command is Command.SERVER
    for path in unit.values("EnvironmentFile"):
        assert not path.startswith("-"), "an optional EnvironmentFile= hides a missing key"
    # SIGHUP ends a dtlspipe without -keyfile (a clean exit: Restart=on-failure won't help)
    reloads = unit.values("ExecReload")
    if reloads:
        assert opts.keyfile is not None, f"{unit.name}: ExecReload= without -keyfile"
        assert _systemd_argv(reloads[0], {"MAINPID": "4242"}) == ["/bin/kill", "-HUP", "4242"]
    assert unit.values("UnsetEnvironment") == ["SSLKEYLOGFILE"]


def test_wrapper_keeps_the_key_out_of_argv(tmp_path: Path) -> None:
    wrapped = [u for u in SERVICES if _systemd_argv(u.values("ExecStart")[0], {})[0] in SHELLS]
    assert wrapped, "the page should show the credential wrapper"
    for n, unit in enumerate(wrapped):
        (tmp_path / str(n)).mkdir()
        argv, environ = _invocation(unit, tmp_path / str(n))
        assert KEY not in " ".join(argv)
        assert environ["DTLSPIPE_PSK"] == KEY  # newline stripped, exported through exec


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _verify(tool: str, root: Path, unit: Path) -> tuple[int, list[str]]:
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{root}:", SYSTEMD_LOG_COLOR="0")
    proc = subprocess.run(
        [tool, "verify", "--man=no", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = [p.name for p in root.rglob("*")]
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines()
        if str(root) in line or any(name in line for name in names)
    ]  # fmt: skip
    return proc.returncode, complaints


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    root = tmp_path / "units"
    root.mkdir()
    sanity = root / "dtlspipe-docs-sanity.service"
    sanity.write_text("[Service]\nExecStart=/bin/sh -c true\n")
    code, complaints = _verify(SYSTEMD_ANALYZE, root, sanity)
    if code != 0 or complaints:
        pytest.skip(f"systemd-analyze verify does not work here: {complaints}")
    sanity.unlink()
    program = shutil.which("true") or "/bin/true"  # verify wants an executable there
    for unit in UNITS:
        path = root / unit.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit.text.replace(PROGRAM, program))
    for unit in SERVICES:
        code, complaints = _verify(SYSTEMD_ANALYZE, root, root / unit.name)
        assert code == 0 and not complaints, (unit.name, code, complaints)
