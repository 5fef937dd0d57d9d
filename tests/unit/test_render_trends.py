"""Sparklines, changes and line charts (`kpictl/cli/render/trends.py`) on known series: exact
text, oldest value first."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kpictl.cli.render import trends


@pytest.mark.parametrize(
    ("series", "line"),
    [
        ([], ""),
        ([None, None], "  "),
        ([5], "▄"),
        ([3, 3, 3], "▄▄▄"),
        ([0, 1, 2, 3, 4, 5, 6, 7], "▁▂▃▄▅▆▇█"),
        ([7, 0], "█▁"),
        ([1, None, 3], "▁ █"),
        ([Decimal("-2"), Decimal("0"), Decimal("2")], "▁▅█"),  # 0 is 4/8 of the way: rounds up
        ([10, 10.5, 11], "▁▅█"),
    ],
)
def test_sparkline(series, line):
    assert trends.sparkline(series) == line
    assert len(trends.sparkline(series)) == len(series)


@pytest.mark.parametrize(
    ("series", "text"),
    [
        ([], ""),
        ([4], ""),
        ([None, 4], ""),
        ([1, 4.5], "↑ +3.5"),
        ([Decimal("80"), Decimal("78.75")], "↓ -1.25"),
        ([3, None, 3], "→ 0"),
        ([Decimal("66.6667"), Decimal("70")], "↑ +3.33"),
    ],
)
def test_change(series, text):
    assert trends.change(series) == text


def test_line_chart_draws_each_value_at_its_row():
    assert trends.line_chart([0, 5, 10, None, 5], width=20, height=3) == [
        "10 │  •",
        "   │ •  •",
        " 0 │•",
    ]


def test_line_chart_keeps_the_newest_values_that_fit():
    chart = trends.line_chart(list(range(100)), width=12, height=2)
    assert chart == ["99 │    ••••", "92 │••••"]  # 92..99 fit; scaled on what is shown
    assert all(len(line) <= 12 for line in chart)


def test_line_chart_of_nothing_and_of_a_constant():
    assert trends.line_chart([None, None], width=40) == ["(no values)"]
    assert trends.line_chart([2, 2], width=40, height=2) == ["2 │", "2 │••"]
