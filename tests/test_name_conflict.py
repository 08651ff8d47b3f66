"""PyPI's ``Dtls`` (PyDTLS) installs a package under our import name ``dtls``. With such a
package first on the path, the tunnel says so in one line and the library's import names
the conflict, instead of failing somewhere later."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _shadowed(tmp_path: Path) -> dict[str, str]:
    """A path on which ``dtls`` is a stand-in for PyDTLS, with our dtls/aio beside it (as
    files of the two packages mix when both are installed into one directory)."""
    fake = tmp_path / "dtls"
    fake.mkdir()
    (fake / "__init__.py").write_text('"""PyDTLS stand-in"""\ndef do_patch():\n    pass\n')
    (fake / "aio").symlink_to(ROOT / "dtls" / "aio")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    return env


def test_dtlspipe_names_the_other_dtls_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dtlspipe", "version"],
        capture_output=True, text=True, env=_shadowed(tmp_path), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip uninstall Dtls" in lines[0], done.stderr
    assert str(tmp_path / "dtls") in lines[0]


def test_dtls_aio_names_the_other_dtls_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import dtls.aio"],
        capture_output=True, text=True, env=_shadowed(tmp_path), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("ImportError: the dtls package")
    assert "PyDTLS" in done.stderr
