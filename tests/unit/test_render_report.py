"""`cli/render/svg_charts.py`: pygal's SVG trimmed for inlining (no script, no comment, no URL at
all), the same file for the same data, a gap for a missing value."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal

from kpictl.cli.render.svg_charts import inline, line_chart

DAYS = [datetime(2026, 1, day, tzinfo=UTC) for day in range(1, 6)]


def test_a_chart_has_no_script_no_comment_and_no_url():
    svg = line_chart("chart-mtti", "mtti", DAYS, [Decimal(1), Decimal("2.5"), None, 4, 5.5])
    assert svg.startswith('<svg id="chart-mtti" ')
    for absent in ("<script", "<!--", "http", "xmlns", "Pygal"):
        assert absent not in svg
    # still well-formed, with the chart's own id in its styles and the KPI as its title
    root = ET.fromstring(svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))
    assert root.attrib["role"] == "img"
    assert "#chart-mtti" in svg
    assert "<title>mtti</title>" in svg


def test_the_same_data_gives_the_same_svg():
    first = line_chart("a", "x", DAYS, [1, 2, 3, 4, 5])
    assert line_chart("a", "x", DAYS, [1, 2, 3, 4, 5]) == first
    assert line_chart("a", "x", DAYS, [1, 2, 3, 4, 6]) != first


def test_a_missing_value_breaks_the_line():
    whole = line_chart("a", "x", DAYS, [1, 2, 3, 4, 5])
    gap = line_chart("a", "x", DAYS, [1, 2, None, 4, 5])
    assert whole.count('class="line reactive nofill"') == 1
    # the line stops before the gap and starts again after it: two pieces
    assert gap.count('class="line reactive nofill"') == 2


def test_dates_label_the_axis():
    svg = line_chart("w", "aiv_pct", [date(2026, 1, 5), date(2026, 1, 12)], [10, 20])
    assert "2026-01-05" in svg and "2026-01-12" in svg
    hourly = line_chart("h", "mtti", [datetime(2026, 1, 5, 13, 30, tzinfo=UTC)], [1])
    assert "01-05 13:30" in hourly


def test_inline_keeps_escaped_text_escaped():
    source = (
        '<svg xmlns="http://www.w3.org/2000/svg" id="chart-1234"><!--c--><script>x()</script>'
        "<title>Pygal</title><text>&lt;b&gt;</text><style>#chart-1234{}</style></svg>"
    )
    assert inline(source, "k", "t") == (
        '<svg id="k" role="img"><title>t</title><text>&lt;b&gt;</text><style>#k{}</style></svg>'
    )
