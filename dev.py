#!/usr/bin/env python3
"""Everything a fresh machine needs, from Python 3.11 alone.

    python3 dev.py serve [orgsafe serve flags]   the service, demo data, embedded db
    python3 dev.py test [pytest args]            the test suite
    python3 dev.py check                         ruff and mypy

The first call makes `.venv` and installs orgsafe with its test tools into it;
later calls reinstall only when pyproject.toml has changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".orgsafe-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs on any Python
        sys.exit("error: orgsafe needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing orgsafe and its test tools into .venv", flush=True)
    pip = [
        str(BIN / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def run(argv: list[str]) -> int:
    return subprocess.call(argv, cwd=ROOT)


def become(argv: list[str]) -> int:
    """Replace this process, so signals (Ctrl-C, SIGTERM) reach the command itself."""
    os.chdir(ROOT)
    if os.name == "nt":
        return run(argv)
    os.execv(argv[0], argv)  # noqa: S606 - our own venv's program
    return 0  # not reached


def main() -> int:
    task, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if task not in ("serve", "test", "check"):
        print(__doc__)
        return 2
    ensure_environment()
    if task == "serve":
        return become([str(BIN / "orgsafe"), "serve", "--demo", *args])
    if task == "test":
        return become([str(BIN / "python"), "-m", "pytest", *args])
    lint = run([str(BIN / "ruff"), "check", "src", "tests", "bench", "dev.py"])
    return lint or run([str(BIN / "mypy")])


if __name__ == "__main__":
    sys.exit(main())
