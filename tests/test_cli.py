"""The console script is installed and answers."""

import subprocess
import sys
from importlib.metadata import version


def test_version_command_prints_installed_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == version("vlm-teacher")
