"""completions/: the committed scripts are what the generator writes today, and the app answers
Typer's completion protocol (what the scripts call on <TAB>) with its real commands and options."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENV_KEYS

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"
KPICTL = Path(sys.executable).parent / "kpictl"  # the console script a user's shell runs
generator = runpy.run_path(str(COMPLETIONS / "generate.py"))


def complete(env: dict[str, str]) -> list[str]:
    """Run the installed `kpictl` the way a completion script does; its answer, line by line."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    full_env.update(env)
    result = subprocess.run([str(KPICTL)], env=full_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_committed_scripts_are_current(tmp_path):
    generator["main"](["--output-dir", str(tmp_path)])
    for name in ("kpictl.bash", "_kpictl", "kpictl.fish"):
        assert (tmp_path / name).read_bytes() == (COMPLETIONS / name).read_bytes(), name


def test_check_mode_reports_a_stale_script(tmp_path, capsys):
    generator["main"](["--output-dir", str(tmp_path)])
    assert generator["main"](["--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "kpictl.fish").write_text("# edited by hand\n", encoding="utf-8")
    assert generator["main"](["--check", "--output-dir", str(tmp_path)]) == 1
    assert "kpictl.fish is out of date" in capsys.readouterr().out


def test_scripts_call_kpictl_with_its_completion_variable():
    assert (COMPLETIONS / "_kpictl").read_text().startswith("#compdef kpictl\n")
    for name in ("kpictl.bash", "_kpictl", "kpictl.fish"):
        text = (COMPLETIONS / name).read_text()
        assert "_KPICTL_COMPLETE=complete_" in text, name


def test_bash_protocol_offers_commands_and_options():
    offered = complete(
        {"_KPICTL_COMPLETE": "complete_bash", "COMP_WORDS": "kpictl mig", "COMP_CWORD": "1"}
    )
    assert offered == ["migrate"]
    offered = complete(
        {
            "_KPICTL_COMPLETE": "complete_bash",
            "COMP_WORDS": "kpictl retention --dr",
            "COMP_CWORD": "2",
        }
    )
    assert offered == ["--dry-run"]
    offered = complete(
        {"_KPICTL_COMPLETE": "complete_bash", "COMP_WORDS": "kpictl history ", "COMP_CWORD": "2"}
    )
    assert sorted(offered) == ["export", "fill", "grant", "revoke"]


def test_zsh_and_fish_protocols():
    offered = complete(
        {"_KPICTL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "kpictl retention --va"}
    )
    assert len(offered) == 1 and '"--vacuum"' in offered[0]
    offered = complete(
        {
            "_KPICTL_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            "_TYPER_COMPLETE_ARGS": "kpictl retent",
        }
    )
    assert [line.split("\t")[0] for line in offered] == ["retention"]


def test_the_bash_script_completes_in_bash():
    """Source the committed script in a real bash and press <TAB> by calling its function."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed here")
    script = COMPLETIONS / "kpictl.bash"
    program = (
        f"source '{script}'; COMP_WORDS=(kpictl mig); COMP_CWORD=1; "
        '_kpictl_completion kpictl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["PATH"] = f"{KPICTL.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["migrate"]
