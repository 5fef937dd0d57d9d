"""`kpictl report --output FILE.html`: one self-contained page, written atomically; values as
`kpictl kpis` prints them; untrusted names escaped; bad inputs write nothing.

The page is checked as HTML by a parser (every element closed in order), for any http(s)
reference, and in a real browser by tests/cli/test_report_browser.py."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests import factories as f
from tests.conftest import run_cli
from tests.helpers import login_role

EVIL = "<script>alert(1)</script>"
VOID = {"meta", "link", "br", "hr", "img", "input", "path", "rect", "circle", "line", "use"}


class Page(HTMLParser):
    """The page's elements: every start tag closed in order (SVG's self-closing ones count as
    closed), texts per element id, the tags and attributes seen."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.ids: dict[str, list[str]] = {}
        self._within: list[str] = []
        self.feed(source)
        self.close()
        assert self.open == [], f"unclosed elements: {self.open}"

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        element_id = dict(attrs).get("id")
        if tag not in VOID:
            self.open.append(tag)
            self._within.append(element_id or "")
        if element_id:
            self.ids.setdefault(element_id, [])

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        self._within.pop()

    def handle_data(self, data):
        for element_id in filter(None, self._within):
            self.ids[element_id].append(data)

    def text_of(self, element_id: str) -> str:
        return " ".join(" ".join(self.ids[element_id]).split())


def two_decimals(value) -> str:
    """As `kpictl kpis` prints a value (worked out here, not by kpictl)."""
    rounded = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return format(rounded.normalize(), "f")


@pytest.fixture
def demo(db_url, engine):
    """The demo's data, plus a repository whose name is a script, with a product value."""
    assert run_cli(["demo"], db_url).exit_code == 0
    now = datetime.now(UTC).replace(microsecond=0)
    with engine.begin() as conn:
        evil = f.repository(conn, "mallory", EVIL)
        f.snapshot(
            conn,
            "product_success_rate",
            Decimal("12.5"),
            now - timedelta(days=7),
            now - timedelta(minutes=1),
            level="product",
            scope_id=evil,
        )
    return db_url


def test_the_report_on_demo_data(demo, tmp_path):
    target = tmp_path / "kpis.html"
    result = run_cli(["report", "--output", str(target), "--tenant", "acme"], demo)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    source = target.read_text(encoding="utf-8")
    page = Page(source)
    assert not re.search(r"https?://", source)  # nothing to fetch, not even a namespace
    assert "script" not in page.tags  # and nothing to run
    assert not [value for name, value in page.attributes if name.startswith("on")]
    # and a policy that would stop any script that got in
    assert ("content", "default-src 'none'; style-src 'unsafe-inline'") in page.attributes
    # each factory KPI's latest value as `kpictl kpis` prints it, in its card
    latest = json.loads(run_cli(["kpis", "--format", "json"], demo).stdout)["data"]
    assert len(latest) == 4
    for row in latest:
        card = page.text_of(f"kpi-{row['kpi_name']}")
        assert card.startswith(f"{row['kpi_name']} {two_decimals(row['value'])} {row['unit']}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source  # the repository, escaped
    assert f"mallory/{EVIL}" in page.text_of("products")  # and shown as its name
    assert "12.5" in page.text_of("products")
    assert page.tags.count("svg") == 4 + 6  # a chart per factory KPI, per history metric
    assert "Weekly history: acme" in page.text_of("tenant")


def test_the_charts_follow_the_daily_buckets_of_the_demo(demo, engine, tmp_path):
    """The demo backfilled 14 daily buckets and aggregated one week: the charts draw the days."""
    target = tmp_path / "kpis.html"
    assert run_cli(["report", "--output", str(target)], demo).exit_code == 0
    page = Page(target.read_text(encoding="utf-8"))
    with engine.connect() as conn:
        days = conn.execute(
            text(
                "SELECT count(*) FROM kpi_snapshots WHERE level = 'factory' AND kpi_name = 'mtti' "
                "AND period_end - period_start = interval '1 day' AND period_end <= now()"
            )
        ).scalar_one()
    assert days >= 13
    assert f"{days} points over the last 30 days, periods of 24 h" in page.text_of("kpi-mtti")


def test_an_empty_database_gives_a_page_that_says_so(db_url, tmp_path):
    target = tmp_path / "kpis.html"
    result = run_cli(["report", "--output", str(target), "--days", "7"], db_url)
    assert result.exit_code == 0, result.output
    page = Page(target.read_text(encoding="utf-8"))
    assert page.text_of("kpi-mtti").startswith("mtti never computed ms")
    assert "No values in the last 7 days" in page.text_of("kpi-mtti")
    assert "No product-level snapshots yet" in page.text_of("products")
    assert "No jobs in the last 7 days" in page.text_of("jobs")
    assert "missing" in page.text_of("freshness")


def test_failed_jobs_come_first_and_their_errors_are_escaped(db_url, engine, tmp_path):
    now = datetime.now(UTC)
    with engine.begin() as conn:
        f.job(conn, "aggregate", "completed", now - timedelta(minutes=10), duration_ms=1200)
        f.job(conn, "aggregate", "failed", now - timedelta(hours=2), error="<b>boom</b>")
        f.job(conn, "aggregate", "completed", now - timedelta(minutes=5), duration_ms=900)
        f.job(conn, "retention", "completed", now - timedelta(days=40))  # out of range
    target = tmp_path / "kpis.html"
    assert run_cli(["report", "--output", str(target)], db_url).exit_code == 0
    source = target.read_text(encoding="utf-8")
    jobs = Page(source).text_of("jobs")
    assert jobs.index("failed") < jobs.index("completed")
    assert jobs.index("900 ms") < jobs.index("1200 ms")  # newest first after the failed ones
    assert "retention" not in jobs
    assert "&lt;b&gt;boom&lt;/b&gt;" in source and "<b>" not in source


def test_rerunning_replaces_the_file_and_leaves_nothing_beside_it(db_url, tmp_path):
    target = tmp_path / "kpis.html"
    target.write_text("old")
    for _ in range(2):
        assert run_cli(["report", "--output", str(target)], db_url).exit_code == 0
    assert [path.name for path in tmp_path.iterdir()] == ["kpis.html"]
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert target.stat().st_mode & 0o777 == 0o644  # readable by a web server, like any file


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "missing option '--output'"),
        (["--output", "{dir}/kpis.html", "--days", "0"], 2, "--days: 0 is not in 1-3660"),
        (["--output", "{dir}/kpis.html", "--days", "x"], 2, "--days: 'x' is not a whole number"),
        (["--output", "{dir}/nope/kpis.html"], 2, "does not exist"),
        (["--output", "{dir}"], 2, "is a directory"),
        (["--output", "{dir}/kpis.html", "--tenant", "nobody"], 1, "unknown tenant"),
    ],
    ids=["no-output", "days-0", "days-x", "no-directory", "a-directory", "unknown-tenant"],
)
def test_bad_inputs_write_nothing(db_url, engine, tmp_path, args, code, message):
    existing = tmp_path / "kpis.html"
    existing.write_text("old")
    result = run_cli(["report", *(arg.format(dir=tmp_path) for arg in args)], db_url)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""
    assert existing.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["kpis.html"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_aggregation_jobs")).scalar() == 0


def test_a_role_without_a_grant_is_told_so(db_url, engine, tmp_path):
    """A dashboard role reads the KPI tables; the tenant's history needs `history grant`."""
    with engine.begin() as conn:
        f.tenant(conn, "acme")
    with login_role(db_url, "SELECT") as url:
        role = make_url(url).username
        with engine.begin() as conn:
            conn.exec_driver_sql(f'GRANT SELECT ON kpi_snapshots, repositories TO "{role}"')
        target = tmp_path / "r.html"
        refused = run_cli(["report", "--output", str(target), "--tenant", "acme"], url)
        assert refused.exit_code == 77, refused.output
        assert "kpictl history grant" in refused.stderr
        assert not target.exists()
        assert (
            run_cli(["history", "grant", "--tenant", "acme", "--role", role], db_url).exit_code == 0
        )
        allowed = run_cli(["report", "--output", str(target), "--tenant", "acme"], url)
        assert allowed.exit_code == 0, allowed.output
        assert "Weekly history: acme" in Page(target.read_text()).text_of("tenant")


def test_the_demo_points_at_the_report(db_url):
    result = run_cli(["demo"], db_url)
    assert result.exit_code == 0
    last = [line for line in result.stdout.splitlines() if line.strip()][-1]
    assert "kpictl report --output kpis.html" in last and "browser" in last


def test_the_template_ships_with_the_package():
    import kpictl.cli.render as render

    assert (Path(render.__file__).parent / "templates" / "report.html.j2").is_file()
