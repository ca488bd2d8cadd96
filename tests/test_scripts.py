"""./install.sh (behind ./run.sh and ./test.sh) installs what is missing, and nothing the second time."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# python3 -m venv DIR: make DIR/bin/python, this same fake; DIR/bin/python -m pip ...: log the call
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
echo "$*" >> "$PIP_LOG"
"""


def _checkout(tmp_path: Path) -> Path:
    """A copy of the install script with its inputs, and a fake python3 that logs pip installs."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("install.sh", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return repo


def _install(repo: Path, tmp_path: Path) -> list[str]:
    log = tmp_path / "pip.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_LOG": str(log)}
    env.pop("AUDIO_THINKER_VENV", None)
    env.pop("PYTHON", None)
    proc = subprocess.run(
        ["bash", "install.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_install_installs_what_is_missing_once_and_again_when_requirements_change(tmp_path):
    repo = _checkout(tmp_path)
    first = _install(repo, tmp_path)
    assert first == ["-m pip install -q torch==2.13.0", "-m pip install -q -r requirements.txt",
                     "-m pip install -q -e ."]  # fmt: skip
    assert (repo / ".venv" / "bin" / "python").exists()
    assert _install(repo, tmp_path) == []  # the second time: nothing
    with (repo / "requirements.txt").open("a") as fh:
        fh.write("extra-package==1.0\n")
    assert len(_install(repo, tmp_path)) == 3  # a changed requirements.txt: installed again
    assert _install(repo, tmp_path) == []


def test_run_and_test_scripts_install_then_start_their_command():
    for name, command in (("run.sh", "app.py"), ("test.sh", "-m pytest -q")):
        text = (ROOT / name).read_text()
        assert os.access(ROOT / name, os.X_OK), name
        assert "./install.sh" in text and command in text and '"$@"' in text, name
    assert "./test.sh" in (ROOT / ".ci" / "run").read_text()
