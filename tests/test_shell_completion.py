"""The README's tab completion: `eval "$(dltrain -sc install=bash)"` completes groups' options."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import BIN, checkout_env

SCRIPT = """
eval "$(dltrain -sc install=bash)"
COMP_LINE="dltrain model=c" COMP_POINT=15 COMP_CWORD=1
hydra_bash_completion
echo "${COMPREPLY[@]}"
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_the_options_of_a_group(tmp_path: Path) -> None:
    env = checkout_env()
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["model=cnn", "model=cnn_large"], done.stdout + done.stderr
