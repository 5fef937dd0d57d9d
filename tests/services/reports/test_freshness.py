"""The freshness service (`services/reports/freshness.py`): the status of an age, inclusive at
both thresholds, and threshold parsing. The command (formats, exit codes): tests/cli/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kpictl import kpis as registry
from kpictl.services.reports import freshness as service
from tests import factories


def test_boundaries_are_inclusive(engine):
    """Age exactly warn-after is fresh, exactly error-after is stale (as_of makes it exact)."""
    calculated = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        factories.snapshot(
            conn, "mtti", 1, factories.at(0), factories.at(24), calculated_at=calculated
        )
    expected = {300: "fresh", 300.001: "stale", 900: "stale", 900.001: "expired"}
    kpis = [registry.BY_NAME["mtti"]]
    with engine.connect() as conn:
        for age, status in expected.items():
            report = service.check_freshness(
                conn,
                kpis,
                level="factory",
                warn_after_seconds=300,
                error_after_seconds=900,
                as_of=calculated + timedelta(seconds=age),
            )
            assert report.kpis[0].age_seconds == pytest.approx(age, abs=1e-6)
            assert report.kpis[0].status == status, age


def test_classify_and_thresholds():
    assert service.classify(None, 300, 900) == "missing"
    assert service.classify(-5, 300, 900) == "fresh"  # a clock ahead of the database's
    assert service.parse_threshold_seconds("2h", "--warn-after") == 7200
    assert service.parse_threshold_seconds("1.5m", "--warn-after") == 90
