"""Connecting from the CLI: passwords masked in every error path, the exit codes of failures,
URL files and credentials, options in the URL. Which URL wins, and the masking rules themselves:
tests/unit/test_database_url.py."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, run_process

SECRET = "Sup3rSecretPw"


def assert_clean(result, *, code: int):
    assert result.exit_code == code, result.output
    assert SECRET not in result.output
    assert "Traceback" not in result.output


def test_unreachable_server_exits_69_without_password():
    url = f"postgresql://kpi:{SECRET}@127.0.0.1:1/kpictl"
    for args in (["doctor"], ["migrate"], ["migrate", "--status"]):
        assert_clean(run_cli([*args, "--database-url", url]), code=69)
    assert_clean(run_cli(["doctor"], url), code=69)


def test_unreachable_with_verbose_still_masks():
    url = f"postgresql://kpi:{SECRET}@127.0.0.1:1/kpictl"
    result = run_cli(["migrate", "-v", "--database-url", url])
    assert result.exit_code == 69
    assert SECRET not in result.output


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://kpi:{SECRET}@db/kpictl",
        f"postgresql://kpi:{SECRET}@db:notaport/kpictl",
    ],
)
def test_bad_url_exits_2_without_password(url):
    result = run_cli(["doctor", "--database-url", url])
    assert result.exit_code == 2, result.output
    assert SECRET not in result.output and "Traceback" not in result.output


def test_url_file_errors(tmp_path):
    missing = run_cli(["doctor"], env={"KPICTL_DATABASE_URL_FILE": str(tmp_path / "nope")})
    assert missing.exit_code == 2 and "nope" in missing.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    assert run_cli(["doctor"], env={"KPICTL_DATABASE_URL_FILE": str(empty)}).exit_code == 2


def test_credentials_file_is_used_and_masked(tmp_path):
    (tmp_path / "database-url").write_text(f"postgres://kpi:{SECRET}@127.0.0.1:1/kpictl\n")
    result = run_cli(["doctor", "--format", "json"], env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert_clean(result, code=69)
    assert "credential" in result.stdout


def test_unknown_role_on_a_live_server_is_masked(db_url):
    from sqlalchemy.engine import make_url

    url = (
        make_url(db_url)
        .set(username="no_such_role", password=SECRET)
        .render_as_string(hide_password=False)
    )
    result = run_cli(["migrate", "--status", "-v"], url)
    assert result.exit_code == 77, result.output
    assert SECRET not in result.output


def test_missing_database_on_a_live_server(db_url):
    from sqlalchemy.engine import make_url

    url = (
        make_url(db_url)
        .set(database="no_such_db", password=SECRET)
        .render_as_string(hide_password=False)
    )
    result = run_cli(["doctor"], url)
    assert result.exit_code == 69
    assert "no_such_db" in result.output and SECRET not in result.output


def test_real_process_unreachable_exits_69():
    result = run_process(["doctor"], f"postgresql://kpi:{SECRET}@127.0.0.1:1/kpictl")
    assert result.returncode == 69
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_version():
    result = run_cli(["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("kpictl ")


def test_unescaped_at_in_password_is_refused_without_echo():
    result = run_cli(["doctor", "--database-url", "postgresql://kpi:Sec@ret99@127.0.0.1:1/db"])
    assert result.exit_code == 2
    assert "%40" in result.stderr
    assert "ret99" not in result.output and "Sec" not in result.output


def test_options_in_the_url_are_kept(db_url):
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from kpictl.db.engine import make_engine
    from tests.conftest import test_settings

    url = make_url(db_url).update_query_dict({"options": "-csearch_path=elsewhere,public"})
    rendered = url.render_as_string(hide_password=False)
    engine = make_engine(rendered, test_settings(rendered))
    with engine.connect() as conn:
        assert conn.execute(text("SHOW search_path")).scalar() == "elsewhere,public"
        assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
    engine.dispose()


def test_output_into_a_closed_pipe_is_not_an_error(db_url):
    import os
    import subprocess
    import sys

    from tests.conftest import ENV_KEYS

    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["KPICTL_DATABASE_URL"] = db_url
    kpictl = subprocess.Popen(
        [sys.executable, "-m", "kpictl", "doctor"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    kpictl.stdout.close()  # like `| head -0`: nobody reads
    _stdout, stderr = kpictl.communicate(timeout=60)
    assert kpictl.returncode == 0, stderr
    assert b"Traceback" not in stderr and b"internal error" not in stderr
