"""`kpictl history fill`: every rule of history.md §2 on hand-computed data.

Week W = Monday 2026-01-05; its end is 2026-01-12 00:00 UTC. Expected values are literals worked
out by hand in the comments, never computed by the code under test.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from kpictl.services.history.fill import FillOptions, fill_all, fill_tenant
from kpictl.services.history.tenants import Tenant
from tests import factories as f
from tests.conftest import run_cli

W = date(2026, 1, 5)
D = Decimal


def ts(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value).replace(tzinfo=UTC)


def history(engine, slug: str | None = None) -> list[tuple]:
    """kpi_history rows (the test role is a superuser: row-level security does not apply)."""
    query = (
        "SELECT t.slug, h.as_of, h.aiv_pct, h.ati_pct, h.crs_pct, h.elasticity_usd_per_point, "
        "h.vli_integrity_pct, h.hrp_pct, h.vli_fallback FROM kpi_history h "
        "JOIN tenants t ON t.id = h.tenant_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(text(query + " ORDER BY t.slug, h.as_of")).all()
    return [tuple(row) for row in rows if slug is None or row[0] == slug]


def seed_alpha(conn) -> object:
    """Alpha: four reports competing for the latest, three vehicle pages of audits."""
    alpha = f.tenant(conn, "alpha")
    # older week, created last: loses on as_of
    f.avi_report(
        conn,
        alpha,
        date(2025, 12, 29),
        aiv_pct=99,
        ati_pct=99,
        crs_pct=99,
        elasticity_usd_per_point=99,
        created_at=ts("2026-02-01 00:00"),
    )
    # week W, created earlier than the next two: loses on created_at
    f.avi_report(
        conn,
        alpha,
        W,
        aiv_pct=50,
        ati_pct=50,
        crs_pct=50,
        elasticity_usd_per_point=50,
        created_at=ts("2026-01-06 10:00"),
    )
    # week W, same created_at as the winner, smaller id: loses on id
    f.avi_report(
        conn,
        alpha,
        W,
        aiv_pct=60,
        ati_pct=60,
        crs_pct=60,
        elasticity_usd_per_point=60,
        created_at=ts("2026-01-07 10:00"),
    )
    # the winner: x.xx5 values round half away from zero
    f.avi_report(conn, alpha, W, aiv_pct=D("10.005"), ati_pct=D("20.004"), crs_pct=D("30.995"),
                 elasticity_usd_per_point=D("-1234.565"), clarity_json={"hrp": 0.12345},
                 created_at=ts("2026-01-07 10:00"))  # fmt: skip
    # page p1: 80.00 then 90.00 (latest before the week's end); 10.00 at the end: ignored
    f.vli_audit(conn, alpha, "p1", ts("2026-01-05 10:00"), D("80.00"))
    f.vli_audit(conn, alpha, "p1", ts("2026-01-10 12:00"), D("90.00"))
    f.vli_audit(conn, alpha, "p1", ts("2026-01-12 00:00"), D("10.00"))
    # page p2: one second before the end counts
    f.vli_audit(conn, alpha, "p2", ts("2026-01-11 23:59:59"), D("85.01"))
    # page p3: only after the week: not a page of this week
    f.vli_audit(conn, alpha, "p3", ts("2026-01-13 08:00"), D("50.00"))
    return alpha


# alpha, week W: aiv 10.005 -> 10.01, ati 20.004 -> 20.00, crs 30.995 -> 31.00,
# elasticity -1234.565 -> -1234.57, VLI mean(90.00, 85.01) = 87.505 -> 87.51,
# hrp 100 x 0.12345 = 12.345 -> 12.35
ALPHA_W = ("alpha", W, D("10.01"), D("20.00"), D("31.00"), D("-1234.57"), D("87.51"), D("12.35"), False)  # fmt: skip


@pytest.fixture
def four_tenants(engine):
    """alpha (full rules), bravo (VLI fallback), charlie (NO_AVI), delta (overflow)."""
    with engine.begin() as conn:
        ids = {"alpha": seed_alpha(conn)}
        ids["bravo"] = f.tenant(conn, "bravo")
        f.avi_report(conn, ids["bravo"], date(2026, 1, 12), aiv_pct=1, ati_pct=2, crs_pct=3,
                     elasticity_usd_per_point=4)  # fmt: skip
        # bravo's only audit is after its week (ends 2026-01-19 00:00): fallback
        f.vli_audit(conn, ids["bravo"], "p1", ts("2026-01-19 00:00"), D("70.00"))
        ids["charlie"] = f.tenant(conn, "charlie")
        ids["delta"] = f.tenant(conn, "delta")
        # numeric(10,2) holds at most 99999999.99
        f.avi_report(conn, ids["delta"], W, aiv_pct=1, ati_pct=1, crs_pct=1,
                     elasticity_usd_per_point=D("123456789.5"))  # fmt: skip
    return ids


BRAVO = ("bravo", date(2026, 1, 12), D("1.00"), D("2.00"), D("3.00"), D("4.00"), D("100.00"), None, True)  # fmt: skip


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_all_tenants_rules_and_isolation(engine, db_url, four_tenants, concurrency):
    result = run_cli(["history", "fill", "--format", "json", "--concurrency", concurrency], db_url)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)["data"]
    assert document["ok"] == 2 and document["skipped"] == 1 and document["total"] == 4
    assert document["ok"] + document["skipped"] + len(document["errors"]) == document["total"]
    [error] = document["errors"]
    assert error["slug"] == "delta" and error["code"] == "INTERNAL_ERROR"
    assert error["tenant_id"] == str(four_tenants["delta"])
    assert "numeric field overflow" in error["message"]
    assert history(engine) == [ALPHA_W, BRAVO]


def test_job_row_holds_the_result(engine, db_url, four_tenants):
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    with engine.connect() as conn:
        jobs = conn.execute(
            text("SELECT job_type, status, metadata, snapshots_created FROM kpi_aggregation_jobs")
        ).all()
    [(job_type, status, metadata, written)] = jobs
    assert (job_type, status, written) == ("history_fill", "failed", 2)
    assert metadata["result"] == json.loads(result.stdout)["data"]


def test_text_summary(db_url, four_tenants):
    result = run_cli(["history", "fill"], db_url)
    assert result.exit_code == 1
    assert "delta" in result.stdout and "INTERNAL_ERROR" in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ok", "skipped", "errors", "total"]
    assert lines[2].split() == ["2", "1", "1", "4"]


def test_nothing_failed_exits_0_with_skips(engine, db_url):
    with engine.begin() as conn:
        seed_alpha(conn)
        f.tenant(conn, "zulu")  # no report: skipped, not an error
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"] == {"ok": 1, "skipped": 1, "total": 2, "errors": []}
    assert history(engine) == [ALPHA_W]


def test_no_tenants_at_all(db_url):
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["data"] == {"ok": 0, "skipped": 0, "total": 0, "errors": []}


def test_single_tenant_by_slug_and_uuid(engine, db_url, four_tenants):
    alpha = str(four_tenants["alpha"])
    for argument in ("alpha", alpha, alpha.upper()):
        result = run_cli(["history", "fill", "--tenant", argument, "--format", "json"], db_url)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["data"] == {
            "ok": True,
            "tenant_id": alpha,
            "as_of": "2026-01-05",
        }
    assert history(engine) == [ALPHA_W]  # only alpha, once


def test_single_tenant_no_avi_exits_1(engine, db_url, four_tenants):
    result = run_cli(["history", "fill", "--tenant", "charlie", "--format", "json"], db_url)
    assert result.exit_code == 1
    document = json.loads(result.stdout)["data"]
    assert document["ok"] is False and document["error"] == "NO_AVI"
    assert document["tenant_id"] == str(four_tenants["charlie"])
    assert set(document) == {"ok", "tenant_id", "error", "message"}


def test_single_tenant_overflow_is_internal_error(engine, db_url, four_tenants):
    result = run_cli(["history", "fill", "--tenant", "delta", "--format", "json"], db_url)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["data"]["error"] == "INTERNAL_ERROR"
    assert history(engine) == []


def test_backfill_one_row_per_report_week(engine, db_url):
    with engine.begin() as conn:
        alpha = seed_alpha(conn)
        f.avi_report(conn, alpha, date(2025, 12, 22), aiv_pct=7, ati_pct=7, crs_pct=7,
                     elasticity_usd_per_point=7)  # fmt: skip  # before --since
        f.avi_report(conn, alpha, date(2026, 1, 19), aiv_pct=8, ati_pct=8, crs_pct=8,
                     elasticity_usd_per_point=8)  # fmt: skip  # after --until
    args = [
        "history",
        "fill",
        "--tenant",
        "alpha",
        "--since",
        "2025-12-29",
        "--until",
        "2026-01-18",
    ]
    result = run_cli([*args, "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["as_of"] == "2026-01-05"
    # week 2025-12-29 ends 2026-01-05 00:00: no audit before it -> 100.00 with the fallback flag
    older = ("alpha", date(2025, 12, 29), D("99.00"), D("99.00"), D("99.00"), D("99.00"), D("100.00"), None, True)  # fmt: skip
    assert history(engine) == [older, ALPHA_W]


def test_backfill_of_all_tenants_and_empty_range(engine, db_url, four_tenants):
    result = run_cli(["history", "fill", "--since", "2026-01-12", "--format", "json"], db_url)
    document = json.loads(result.stdout)["data"]
    # only bravo has a report from 2026-01-12 on
    assert (document["ok"], document["skipped"], document["errors"]) == (1, 3, [])
    assert result.exit_code == 0
    assert history(engine) == [BRAVO]
    result = run_cli(["history", "fill", "--tenant", "alpha", "--since", "2030-01-01"], db_url)
    assert result.exit_code == 1 and "NO_AVI" in result.stdout


HRP_CASES = [
    ({"hrp": 0.5}, D("50.00")),
    ({"hrp": "0.25"}, D("25.00")),  # a string holding a decimal number counts
    ({"hrp": "0.0051"}, D("0.51")),
    ({"hrp": 0.123456}, D("12.35")),  # 12.3456 -> 12.35
    ({"hrp": 0.000049}, D("0.00")),  # 0.0049 -> 0.00
    ({"hrp": 1}, D("100.00")),
    ({"hrp": 0}, D("0.00")),
    ({"hrp": True}, None),
    ({"hrp": False}, None),
    ({"hrp": "abc"}, None),
    ({"hrp": "0.5x"}, None),
    ({"hrp": "1.5"}, None),
    ({"hrp": 1.0001}, None),
    ({"hrp": -0.1}, None),
    ({"hrp": None}, None),
    ({"hrp": [0.5]}, None),
    ({"hrp": {"p": 0.5}}, None),
    ({"other": 0.5}, None),
    ("just a string", None),
    ([0.5], None),
    (None, None),
]


def test_hrp_present_absent_and_non_numeric(engine, db_url):
    with engine.begin() as conn:
        for number, (clarity, _) in enumerate(HRP_CASES):
            tenant_id = f.tenant(conn, f"hrp-{number:02d}")
            f.avi_report(conn, tenant_id, W, aiv_pct=1, clarity_json=clarity)
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    assert result.exit_code == 0, result.output
    found = [row[7] for row in history(engine)]
    assert found == [expected for _, expected in HRP_CASES]


def test_null_source_values_stay_null(engine, db_url):
    with engine.begin() as conn:
        tenant_id = f.tenant(conn, "nulls")
        f.avi_report(conn, tenant_id, W)
    assert run_cli(["history", "fill"], db_url).exit_code == 0
    assert history(engine) == [("nulls", W, None, None, None, None, D("100.00"), None, True)]


def test_vli_mean_rounding_over_pages(engine, db_url):
    with engine.begin() as conn:
        tenant_id = f.tenant(conn, "pages")
        f.avi_report(conn, tenant_id, W, aiv_pct=1)
        # mean(33.33, 33.34, 33.34) = 33.336666... -> 33.34; an older value of p3 is replaced
        f.vli_audit(conn, tenant_id, "p1", ts("2026-01-05 00:00"), D("33.33"))
        f.vli_audit(conn, tenant_id, "p2", ts("2026-01-06 00:00"), D("33.34"))
        f.vli_audit(conn, tenant_id, "p3", ts("2025-06-01 00:00"), D("1.00"))
        f.vli_audit(conn, tenant_id, "p3", ts("2026-01-01 00:00"), D("33.34"))
        # another tenant's audit of a page with the same id does not count
        other = f.tenant(conn, "other")
        f.vli_audit(conn, other, "p1", ts("2026-01-07 00:00"), D("0.00"))
    assert run_cli(["history", "fill"], db_url).exit_code == 0
    assert history(engine, "pages")[0][6:] == (D("33.34"), None, False)


def test_nan_is_a_bad_value_for_its_tenant_only(engine, db_url):
    with engine.begin() as conn:
        seed_alpha(conn)
        nan = f.tenant(conn, "nan")
        f.avi_report(conn, nan, W, aiv_pct=D("NaN"))
        audited = f.tenant(conn, "nan-audit")
        f.avi_report(conn, audited, W, aiv_pct=1)
        f.vli_audit(conn, audited, "p1", ts("2026-01-06 00:00"), D("NaN"))
    result = run_cli(["history", "fill", "--format", "json", "--concurrency", "1"], db_url)
    assert result.exit_code == 1
    errors = json.loads(result.stdout)["data"]["errors"]
    assert [(e["slug"], e["code"]) for e in errors] == [
        ("nan", "INTERNAL_ERROR"),
        ("nan-audit", "INTERNAL_ERROR"),
    ]
    assert "aiv_pct is NaN" in errors[0]["message"]
    assert "vli_integrity_pct is NaN" in errors[1]["message"]
    assert history(engine) == [ALPHA_W]


def test_vli_same_instant_audits_lower_counts(engine, db_url):
    with engine.begin() as conn:
        tenant_id = f.tenant(conn, "twins")
        f.avi_report(conn, tenant_id, W, aiv_pct=1)
        f.vli_audit(conn, tenant_id, "p1", ts("2026-01-08 00:00"), D("60.00"))
        f.vli_audit(conn, tenant_id, "p1", ts("2026-01-08 00:00"), D("40.00"))
        f.vli_audit(conn, tenant_id, "p2", ts("2026-01-08 00:00"), D("70.01"))
    assert run_cli(["history", "fill", "--tenant", "twins"], db_url).exit_code == 0
    # mean(40.00, 70.01) = 55.005 -> 55.01
    assert history(engine, "twins")[0][6:] == (D("55.01"), None, False)


def test_fill_twice_is_idempotent_and_moves_updated_at(engine, db_url, four_tenants):
    query = text("SELECT id, tenant_id, as_of, created_at, updated_at FROM kpi_history ORDER BY id")
    run_cli(["history", "fill"], db_url)
    with engine.connect() as conn:
        first = conn.execute(query).all()
    rows_first = history(engine)
    run_cli(["history", "fill"], db_url)
    with engine.connect() as conn:
        second = conn.execute(query).all()
    assert history(engine) == rows_first == [ALPHA_W, BRAVO]
    assert [row[:4] for row in first] == [row[:4] for row in second]
    assert all(after[4] > before[4] for before, after in zip(first, second, strict=True))


def test_refill_updates_changed_values(engine, db_url):
    with engine.begin() as conn:
        alpha = seed_alpha(conn)
    run_cli(["history", "fill"], db_url)
    with engine.begin() as conn:
        f.avi_report(conn, alpha, W, aiv_pct=D("42.424"), created_at=ts("2026-01-08 00:00"))
    run_cli(["history", "fill"], db_url)
    [row] = history(engine)
    assert row[2:5] == (D("42.42"), None, None)


def test_service_chunk_fallback_isolates_failures(engine, four_tenants):
    """The set-based chunk fails on delta; bisection writes the others and names delta."""
    everyone = [Tenant(four_tenants[slug], slug) for slug in ("alpha", "bravo", "charlie", "delta")]
    outcomes = fill_all(engine, FillOptions(concurrency=1), tenant_list=everyone)
    codes = {outcome.tenant.slug: outcome.code for outcome in outcomes}
    assert codes == {"alpha": None, "bravo": None, "charlie": "NO_AVI", "delta": "INTERNAL_ERROR"}
    assert history(engine) == [ALPHA_W, BRAVO]
    one = fill_tenant(engine, everyone[0], FillOptions())
    assert (one.code, one.as_of, one.rows) == (None, W, 1)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--tenant", "Not A Slug"], "unknown tenant: Not A Slug"),
        (["--tenant", " padded"], "' padded'"),
        (["--tenant", "tab\there"], "tab\\there"),
        (["--tenant", "x'; DROP TABLE tenants; --"], "DROP TABLE"),
        (["--tenant", ""], "''"),
        (["--since", "2026-13-01"], "2026-13-01"),
        (["--since", "yesterday"], "yesterday"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "2026-02-01"),
        (["--until", "2026-1-1", "--since", "2026-01-01"], "2026-1-1"),
        (["--until", "2026-01-01"], "--until"),
        (["--concurrency", "0"], "0"),
        (["--concurrency", "65"], "65"),
        (["--format", "xml"], "xml"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(engine, db_url, four_tenants, args, named):
    result = run_cli(["history", "fill", *args], db_url)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "Traceback" not in result.output
    assert history(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM kpi_aggregation_jobs")).scalar() == 0


@pytest.mark.parametrize("argument", ["nobody", "00000000-0000-4000-8000-000000000000"])
def test_unknown_tenant_is_a_usage_error(engine, db_url, four_tenants, argument):
    """history.md §2: "a UUID or an existing slug; anything else is a usage error"."""
    result = run_cli(["history", "fill", "--tenant", argument], db_url)
    assert result.exit_code == 2
    assert f"unknown tenant: {argument}" in result.stderr
    assert history(engine) == []


@pytest.mark.slow
def test_ten_thousand_tenants_fill_in_seconds(engine, db_url):
    """Issue 4 §2: 10,000 tenants with a year of weekly reports (and 5 audited pages each),
    filled without a round trip per tenant; the original took ~100 ms a tenant (17 minutes)."""
    import time

    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tenants (slug, name) SELECT 't' || lpad(g::text, 5, '0'), 'T' "
                "FROM generate_series(1, 10000) AS g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO avi_reports (tenant_id, as_of, aiv_pct, ati_pct, crs_pct, "
                "elasticity_usd_per_point, clarity_json) "
                "SELECT t.id, DATE '2025-01-06' + 7 * w, 50.005, 40, 30, 1000, "
                "'{\"hrp\": 0.5}'::jsonb FROM tenants t, generate_series(0, 51) AS w"
            )
        )
        conn.execute(
            text(
                "INSERT INTO vdp_vli_audit (tenant_id, vdp_id, as_of, integrity_pct) "
                "SELECT t.id, 'p' || p, TIMESTAMPTZ '2025-12-01 00:00+00' + p * interval '1 day', "
                "80 + p FROM tenants t, generate_series(1, 5) AS p"
            )
        )
        conn.execute(text("ANALYZE"))
    started = time.monotonic()
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"] == {
        "ok": 10000,
        "skipped": 0,
        "total": 10000,
        "errors": [],
    }
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT as_of, aiv_pct, vli_integrity_pct, hrp_pct, count(*) FROM kpi_history "
                "GROUP BY 1, 2, 3, 4"
            )
        ).all()
    # latest week 2025-01-06 + 357 days = 2025-12-29; VLI mean(81..85) = 83.00; 50.005 -> 50.01
    assert [tuple(row) for row in rows] == [
        (date(2025, 12, 29), D("50.01"), D("83.00"), D("50.00"), 10000)
    ]
    assert elapsed < 30, f"{elapsed:.1f} s"
    print(f"10,000 tenants filled in {elapsed:.2f} s")
    # one tenant overflows numeric(10,2): it alone fails, the 9,999 others are written
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO avi_reports (tenant_id, as_of, elasticity_usd_per_point) "
                "SELECT id, DATE '2026-01-05', 1e12 FROM tenants WHERE slug = 't04321'"
            )
        )
    started = time.monotonic()
    result = run_cli(["history", "fill", "--format", "json"], db_url)
    elapsed = time.monotonic() - started
    document = json.loads(result.stdout)["data"]
    assert result.exit_code == 1
    assert (document["ok"], document["total"]) == (9999, 10000)
    assert [(e["slug"], e["code"]) for e in document["errors"]] == [("t04321", "INTERNAL_ERROR")]
    assert elapsed < 60, f"{elapsed:.1f} s"
    print(f"10,000 tenants, one failing, filled in {elapsed:.2f} s")


def test_any_existing_slug_can_be_named(engine, db_url):
    """tenants.slug is free text: a slug outside the usual style still names its tenant."""
    with engine.begin() as conn:
        odd = f.tenant(conn, "Acme.DE")
        f.avi_report(conn, odd, date(2026, 3, 2), aiv_pct=Decimal("12.345"))
    fill = run_cli(["history", "fill", "--tenant", "Acme.DE", "--format", "json"], db_url)
    assert fill.exit_code == 0, fill.output
    assert json.loads(fill.stdout)["data"] == {
        "ok": True,
        "tenant_id": str(odd),
        "as_of": "2026-03-02",
    }
    export = run_cli(["history", "export", "--tenant", "Acme.DE", "--format", "csv"], db_url)
    assert export.exit_code == 0, export.output
    assert export.stdout.splitlines()[1].startswith("2026-03-02,12.35,")
