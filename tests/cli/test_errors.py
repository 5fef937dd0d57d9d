"""Every error is one line in the operator's terms (issue 12, items 4 and 8): empty, multi-host,
bad-port and unknown-parameter URLs are usage errors that start no embedded server; `--output`
failures and lock timeouts say what happened without "this is a bug" or SQL text."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from kpictl.errors import ConfigurationError
from kpictl.settings import resolve_target
from tests.conftest import libpq, run_cli, run_process

SECRET = "Sup3rSecretPw"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kpictl: error:")]


def assert_usage_error(result, *, names: str, data_dir: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    assert "embedded" not in result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert names in error_lines(result.stderr)[0]
    assert not data_dir.exists()  # no embedded server was started


@pytest.fixture
def data_dir() -> Path:
    return Path(os.environ["KPICTL_DATA_DIR"])


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_database_url_flag_is_a_usage_error(value, data_dir):
    result = run_cli(["doctor", "--database-url", value])
    assert_usage_error(result, names="empty database URL from --database-url", data_dir=data_dir)


@pytest.mark.parametrize("name", ["KPICTL_DATABASE_URL", "DATABASE_URL"])
def test_empty_url_variable_is_a_usage_error(name, data_dir):
    result = run_cli(["kpis"], env={name: ""})
    assert_usage_error(result, names=f"empty database URL from {name}", data_dir=data_dir)


def test_empty_kpictl_variable_does_not_fall_through(data_dir):
    """Set but empty is a mistake, not "use the next source": DATABASE_URL is not used."""
    env = {"KPICTL_DATABASE_URL": "", "DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}
    with pytest.raises(ConfigurationError, match="KPICTL_DATABASE_URL"):
        resolve_target(None, env)
    result = run_cli(["doctor"], env=env)
    assert_usage_error(result, names="KPICTL_DATABASE_URL", data_dir=data_dir)


def test_empty_url_file_variable_is_a_usage_error(data_dir):
    result = run_cli(["doctor"], env={"KPICTL_DATABASE_URL_FILE": ""})
    assert_usage_error(result, names="KPICTL_DATABASE_URL_FILE", data_dir=data_dir)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        (f"postgresql://kpi:{SECRET}@h1,h2/db", "several hosts (h1,h2)"),
        (f"postgresql://kpi:{SECRET}@h1:5432,h2:5433/db", "several hosts"),
        (f"postgresql://kpi:{SECRET}@db/x?host=h1,h2", "several hosts"),
        (f"postgresql://kpi:{SECRET}@db:99999/x", "port '99999' is not a number in 1-65535"),
        (f"postgresql://kpi:{SECRET}@db:0/x", "port '0'"),
        (f"postgresql://kpi:{SECRET}@db:notaport/x", "port 'notaport'"),
        (f"postgresql://kpi:{SECRET}@[::1]:70000/x", "port '70000'"),
        (f"postgresql://kpi:{SECRET}@db/x?port=99999", "port '99999'"),
        (f"postgresql://kpi:{SECRET}@db/x?sslmdoe=require", "unknown parameter 'sslmdoe'"),
    ],
)
def test_bad_urls_are_usage_errors(url, names, data_dir):
    result = run_cli(["migrate", "--status", "--database-url", url])
    assert_usage_error(result, names=names, data_dir=data_dir)
    assert "invalid literal" not in result.stderr


def test_bad_url_in_a_real_process_is_one_line():
    result = run_process(["doctor"], f"postgresql://kpi:{SECRET}@h1,h2/db")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert len(error_lines(result.stderr)) == 1


# --- history export --output ---------------------------------------------------------------


@pytest.fixture
def tenant_db(db_url, engine):
    from tests import factories as f

    with engine.begin() as conn:
        f.tenant(conn, "acme")
    return db_url


@pytest.mark.parametrize("target", ["/proc/version", "/proc/kpictl-export.csv"])
def test_output_that_cannot_be_written_is_one_line(tenant_db, target):
    result = run_cli(["history", "export", "--tenant", "acme", "--output", target], tenant_db)
    assert result.exit_code == 1, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and f"cannot write {target}" in lines[0], result.stderr
    assert "bug" not in result.output and "internal error" not in result.output
    assert "Traceback" not in result.output and result.stdout == ""


def test_output_under_a_file_is_a_usage_error(tenant_db, tmp_path):
    parent = tmp_path / "a-file"
    parent.write_text("x")
    result = run_cli(
        ["history", "export", "--tenant", "acme", "--output", str(parent / "out.csv")], tenant_db
    )
    assert result.exit_code == 2, result.output
    assert f"{parent} is not a directory" in result.stderr
    assert "bug" not in result.output and "Traceback" not in result.output


# --- lock timeouts ---------------------------------------------------------------------------


def test_lock_timeout_is_one_line_without_sql(db_url):
    with psycopg.connect(libpq(db_url)) as holder:
        holder.execute("LOCK TABLE kpi_snapshots IN ACCESS EXCLUSIVE MODE")
        result = run_cli(["kpis", "--format", "json"], db_url, env={"KPICTL_LOCK_TIMEOUT": "1s"})
        holder.rollback()
    assert result.exit_code == 1, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "lock timeout" in lines[0] and "KPICTL_LOCK_TIMEOUT" in lines[0]
    for fragment in ("SELECT", "FROM", "LINE", "CONTEXT", "kpi_snapshots."):
        assert fragment not in result.stderr, result.stderr
    assert "bug" not in result.output
