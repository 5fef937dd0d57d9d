"""The HTML report in a real browser: Debian's headless Chromium loads it from a file:// URL
with the network off and scripts disabled (tests/browser.py). Nothing may be requested, nothing
logged as an error, and every chart must be drawn with a size."""

from __future__ import annotations

import os

import pytest

from tests import browser
from tests.conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def chromium():
    if browser.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed here (Debian: apt install chromium)")


def test_the_report_in_headless_chromium(chromium, db_url, tmp_path):
    assert run_cli(["demo"], db_url).exit_code == 0
    page = tmp_path / "kpis.html"
    result = run_cli(["report", "--output", str(page), "--tenant", "acme"], db_url)
    assert result.exit_code == 0, result.output
    loaded = browser.load(page, ".chart svg")
    assert loaded.console_errors == []
    assert loaded.requests == []
    assert len(loaded.boxes) == 4 + 6  # the factory KPIs and the tenant's history metrics
    assert all(width > 200 and height > 50 for width, height in loaded.boxes), loaded.boxes
    assert loaded.title.startswith("<title>KPI report: acme")
    assert loaded.screenshot.startswith(PNG) and len(loaded.screenshot) > 20_000
    (tmp_path / "report.png").write_bytes(loaded.screenshot)  # kept with the test's files


def test_a_broken_reference_would_be_seen(chromium, tmp_path):
    """The check itself: a page that asks for a remote script and an image is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>x</title>"
        '<script src="https://cdn.example.com/x.js"></script></head>'
        '<body><img src="http://example.com/a.png"><div class="chart"><svg width="0" '
        'height="0"></svg></div></body></html>'
    )
    loaded = browser.load(page, ".chart svg")
    assert loaded.requests  # the remote resources were asked for (and failed offline)
    assert loaded.console_errors
    assert loaded.boxes == [(0.0, 0.0)]
