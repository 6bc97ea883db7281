"""The systemd units for a plain VM install (deploy/systemd) pass `systemd-analyze
verify`: known keys and sections only, executables that exist. The units name
/srv/conveyor; here they point at this checkout (its .venv), where the commands exist.
Skipped where systemd-analyze is missing (CI has it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["conveyor-web.service", "conveyor-worker@.service"])
def test_the_unit_passes_systemd_analyze_verify(tmp_path, unit):
    text = (UNITS / unit).read_text()
    assert "/srv/conveyor/.venv/bin/" in text
    env = tmp_path / "conveyor.env"
    env.write_text("SECRET_KEY=x\n")
    local = text.replace("/srv/conveyor", str(ROOT)).replace("/etc/conveyor/conveyor.env", str(env))
    (tmp_path / unit).write_text(local)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert "Unknown" not in output and "ignoring" not in output, output
