"""Shell completion of option values, through the shell protocol Typer speaks (bash here): fixed
choices, KPI names from the registry, IANA time zones, tenant slugs from the configured
database, and nothing (quietly, quickly) when that database cannot answer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import factories as f
from tests.conftest import ENV_KEYS


def complete(words: str, **env: str) -> list[str]:
    """What bash completion offers for the last word of `words` (a trailing space: a new word)."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    parts = words.split(" ")
    result = subprocess.run(
        [sys.executable, "-m", "kpictl"],
        env={
            **base,
            "_KPICTL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("kpictl jobs --type ", ["aggregate", "backfill", "retention", "history_fill", "adopt"]),
        ("kpictl jobs --status f", ["failed"]),
        ("kpictl backfill --bucket ", ["hour", "day", "week"]),
        ("kpictl freshness --level ", ["factory", "product", "run"]),
        ("kpictl kpis --format nd", ["ndjson"]),
        ("kpictl freshness --kpi mt", ["mtti"]),
        (
            "kpictl freshness --kpi product_",
            ["product_success_rate", "product_throughput", "product_avg_duration"],
        ),
        (
            "kpictl backfill --timezone Europe/Be",
            ["Europe/Belfast", "Europe/Belgrade", "Europe/Berlin"],
        ),
    ],
)
def test_values_are_offered(words, offered):
    assert complete(words) == offered


def test_tenant_slugs_come_from_the_configured_database(db_url, engine):
    with engine.begin() as conn:
        for slug in ("acme", "acme-eu", "globex"):
            f.tenant(conn, slug)
    assert complete("kpictl history export --tenant ac", KPICTL_DATABASE_URL=db_url) == [
        "acme",
        "acme-eu",
    ]
    grant = "kpictl history grant --role r --tenant "
    assert complete(grant, KPICTL_DATABASE_URL=db_url) == ["acme", "acme-eu", "globex"]


def test_no_tenants_without_a_database_that_answers(tmp_path):
    unreachable = "postgresql://kpictl@127.0.0.1:1/kpictl"
    assert complete("kpictl history fill --tenant a", KPICTL_DATABASE_URL=unreachable) == []
    # no URL at all: the embedded server is never started for a completion
    home = tmp_path / "home"
    assert complete("kpictl history fill --tenant a", KPICTL_DATA_DIR=str(home)) == []
    assert not home.exists()
