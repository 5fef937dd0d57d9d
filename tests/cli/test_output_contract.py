"""docs/OUTPUT.md, checked against every command: the keys its per-command table lists are the
keys the JSON has and the header the CSV has; `--format ndjson` is the JSON's `data`, a row a
line; and every failure in `--format json` (bad value, parse error, busy lock, unreachable
database) is a `{"status": "error", "error": {"message", "exit_code"}}` document on stdout."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kpictl.services.jobs.lock import PIPELINE, RETENTION
from tests import factories as f
from tests.conftest import libpq, run_cli

OUTPUT_MD = Path(__file__).resolve().parents[2] / "docs" / "OUTPUT.md"
UNREACHABLE = "postgresql://kpictl@127.0.0.1:1/kpictl"


def documented(command: str) -> list[list[str]]:
    """The key lists (backticked, comma-separated) of `command`'s row in OUTPUT.md's table."""
    for line in OUTPUT_MD.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and command in re.findall(r"`([^`]+)`", cells[1]):
            groups = re.findall(r"`([^`]+)`", cells[3])
            return [group.split(", ") for group in groups if ", " in group]
    raise AssertionError(f"docs/OUTPUT.md has no row for {command!r}")


def as_json(args: list[str], url: str, code: int = 0) -> Any:
    result = run_cli([*args, "--format", "json"], url)
    assert result.exit_code == code, result.output
    document = json.loads(result.stdout)
    assert next(iter(document)) == "status"
    return document


def csv_header(args: list[str], url: str) -> list[str]:
    result = run_cli([*args, "--format", "csv"], url)
    assert result.exit_code == 0, result.output
    return next(csv.reader(io.StringIO(result.stdout)))


def ndjson_rows(args: list[str], url: str) -> list[dict[str, Any]]:
    result = run_cli([*args, "--format", "ndjson"], url)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def factory(db_url, engine):
    """Runs aggregated, a backfill, two tenants filled: every command has something to show."""
    with engine.begin() as conn:
        f.recent_runs(conn)
        f.reporting_tenants(conn, 2)
    for args in (["aggregate"], ["history", "fill"]):
        assert run_cli(args, db_url).exit_code == 0
    return db_url


ROW_COMMANDS = {
    "kpis": ["kpis"],
    "jobs": ["jobs"],
    "retention": ["retention", "--dry-run"],
    "history export": ["history", "export", "--tenant", "tenant-1"],
}


@pytest.mark.parametrize("command", sorted(ROW_COMMANDS))
def test_row_commands_json_csv_and_ndjson_share_the_documented_columns(factory, command):
    args = ROW_COMMANDS[command]
    keys = documented(command)[0]
    if command == "retention":  # --dry-run counts what would go: its columns are the second list
        keys = [*keys[:4], *documented(command)[1]]
    document = as_json(args, factory)
    assert document["status"] == "success" and document["data"]
    assert all(list(row) == keys for row in document["data"])
    assert csv_header(args, factory) == keys
    moving = {"cutoff"}  # retention's cutoff is "now - N days", now at each run
    assert [
        {k: v for k, v in row.items() if k not in moving} for row in ndjson_rows(args, factory)
    ] == [{k: v for k, v in row.items() if k not in moving} for row in document["data"]]


def test_jobs_show_is_one_object_in_json_and_one_row_in_ndjson(factory):
    (job,) = as_json(["jobs", "--type", "aggregate"], factory)["data"]
    shown = as_json(["jobs", "show", job["id"]], factory)["data"]
    assert {key: shown[key] for key in job} == job  # the listing's columns, and more
    assert ndjson_rows(["jobs", "show", job["id"]], factory) == [shown]


def test_freshness_rows_and_overall(factory):
    rows_keys, overall_keys = documented("freshness")
    document = as_json(["freshness"], factory)
    assert list(document) == ["status", "overall", "data"]
    assert all(list(row) == rows_keys for row in document["data"])
    assert list(document["overall"]) == overall_keys
    assert isinstance(document["overall"]["exit_code"], int)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("aggregate", ["aggregate"]),
        ("aggregate --dry-run", ["aggregate", "--dry-run"]),
        ("migrate --status", ["migrate", "--status"]),
        ("migrate", ["migrate"]),
        ("doctor", ["doctor"]),
    ],
)
def test_object_commands_have_the_documented_keys(factory, command, args):
    keys = documented(command)[0]
    document = as_json(args, factory)
    assert list(document) == ["status", "data"] and document["status"] == "success"
    assert list(document["data"]) == keys


def test_pipeline_counts_are_integers(factory):
    data = as_json(["backfill", "--since", f.at(0).date().isoformat()], factory)["data"]
    assert list(data) == documented("backfill")[0]
    counts = [data["snapshots_created"], data["invalid_runs"], data["skipped_buckets"]]
    for period in data["periods"]:
        assert list(period) == documented("backfill")[1]
        counts += [period[key] for key in ("runs", "products", "snapshots", "invalid_runs")]
    assert all(type(count) is int for count in counts)


def test_history_fill_documents(factory):
    everyone = as_json(["history", "fill"], factory)["data"]
    assert list(everyone) == ["ok", "skipped", "total", "errors"]
    assert (everyone["ok"], everyone["total"]) == (2, 2)
    single = as_json(["history", "fill", "--tenant", "tenant-0"], factory)["data"]
    assert list(single) == ["ok", "tenant_id", "as_of"] and single["ok"] is True


# --- failures: a document on stdout too ------------------------------------------------------


def assert_failure(args: list[str], url: str, code: int, message: str) -> None:
    result = run_cli([*args, "--format", "json"], url)
    assert result.exit_code == code, result.output
    document = json.loads(result.stdout)
    assert document == {
        "status": "error",
        "error": {"message": document["error"]["message"], "exit_code": code},
    }
    assert message in document["error"]["message"]
    assert f"kpictl: error: {document['error']['message']}" in result.stderr or code in (3, 75)


@pytest.mark.parametrize(
    "args",
    [
        ["kpis"],
        ["jobs"],
        ["freshness"],
        ["retention", "--dry-run"],
        ["aggregate"],
        ["history", "export", "--tenant", "acme"],
        ["history", "fill"],
        ["migrate", "--status"],
    ],
)
def test_an_unreachable_database_is_a_document(args):
    code = 3 if args == ["freshness"] else 69
    assert_failure(args, UNREACHABLE, code, "unreachable")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "--limit", "0"], "--limit 0"),
        (["kpis", "--level", "nope"], "invalid value for '--level'"),
        (["jobs", "--bogus"], "no such option: --bogus"),
        (["aggregate", "--period-hours", "x"], "invalid value for --period-hours"),
        (["migrate", "--sql"], "--sql prints SQL, not JSON"),
    ],
)
def test_a_bad_value_is_a_document_before_any_connection(args, message):
    assert_failure(args, UNREACHABLE, 2, message)


@pytest.mark.parametrize(
    ("args", "key"), [(["aggregate"], PIPELINE.key), (["retention"], RETENTION.key)]
)
def test_a_busy_lock_is_a_document(db_url, args, key):
    with psycopg.connect(libpq(db_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        assert_failure(args, db_url, 75, "holds the lock")
