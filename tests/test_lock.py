"""The lock every install path uses: uv.lock and the hash-checked requirement files made from it.

A lock that drifts from pyproject.toml installs something nobody declared (or leaves out what
was declared); requirement files that drift from uv.lock make the images and the dev venv run
different bits. Both would pass every other test on the day they were made.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"


def lock_copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    return tmp_path


def check_lock(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check-lock.py"), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_checked_in_lock_matches_the_project() -> None:
    done = check_lock(ROOT)
    assert done.returncode == 0, done.stderr


def test_uv_agrees_the_lock_is_current() -> None:
    done = subprocess.run(
        [str(UV), "lock", "--check", "--offline", "--python", "3.11"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("name", "extras"),
    [
        ("dev.txt", ["--all-extras"]),
        ("orchestrator.txt", ["--extra", "docker"]),
        ("worker.txt", ["--extra", "neonize"]),
    ],
)
def test_requirement_files_are_exported_from_uv_lock(
    tmp_path: Path, name: str, extras: list[str]
) -> None:
    out = tmp_path / name
    subprocess.run(
        [str(UV), "export", "--frozen", "--quiet", "--no-emit-project", "--format"]
        + ["requirements-txt", *extras, "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )

    def pins(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert pins((ROOT / "requirements" / name).read_text()) == pins(out.read_text())


def test_a_dependency_in_pyproject_but_not_in_the_lock_is_refused(tmp_path: Path) -> None:
    root = lock_copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"tzlocal>=5",', '"tzlocal>=5",\n    "httpx>=0.27",')
    )
    done = check_lock(root)
    assert done.returncode == 1
    assert "httpx>=0.27" in done.stderr


def test_a_dependency_dropped_from_pyproject_is_refused(tmp_path: Path) -> None:
    root = lock_copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "babel>=2.12",\n', ""))
    done = check_lock(root)
    assert done.returncode == 1
    assert "babel" in done.stderr


def test_setup_refuses_a_lock_that_does_not_verify(tmp_path: Path) -> None:
    """A requirement file whose pin or hash is not uv.lock's: setup stops before installing."""
    root = lock_copy(tmp_path)
    dev = root / "requirements" / "dev.txt"
    text = dev.read_text()
    first_hash = re.search(r"sha256:([0-9a-f]{64})", text)
    assert first_hash is not None
    dev.write_text(text.replace(first_hash[1], "0" * 64, 1))
    done = subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1
    assert "has a hash uv.lock does not" in done.stderr
    assert "refusing an unverified lock" in done.stderr
    assert not (root / ".venv").exists()


def test_setup_again_with_nothing_changed_installs_and_prints_nothing() -> None:
    """scripts/demo.sh runs setup first: its output must be the demo's, not pip's."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
