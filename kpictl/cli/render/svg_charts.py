"""Line charts as static SVG for the HTML report, drawn by pygal (docs/ARCHITECTURE.md, "The
HTML report": why pygal).

pygal's SVG is made to stand alone; inlined into a page it is trimmed to what a browser draws
with scripts disabled and no network: its `<script>` (a config object for the optional tooltip
script, which is not loaded) and its comments are left out, and so is the SVG namespace
declaration, which the HTML parser implies. Its random chart id is replaced by the caller's, so
that the same data gives the same file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)

COLOUR = "#2563eb"
WIDTH, HEIGHT = 640, 240
X_LABELS = 6  # dates shown under a chart


def line_chart(
    chart_id: str,
    title: str,
    labels: Sequence[date | datetime],
    values: Sequence[Decimal | float | None],
) -> str:
    """One series as an inline `<svg>`: `labels` along the x-axis (a few shown), a gap for None."""
    chart = _new_chart(dots=len(values) <= 60)
    chart.x_labels = [_label(moment) for moment in labels]
    chart.add(title, [None if value is None else float(value) for value in values])
    return inline(chart.render(is_unicode=True), chart_id, title)


def _new_chart(*, dots: bool) -> Any:
    import pygal
    from pygal.style import Style

    style = Style(colors=(COLOUR,), font_family="system-ui, sans-serif", **STYLE)
    return pygal.Line(js=[], style=style, show_dots=dots, **CONFIG)


STYLE = {
    "background": "transparent",
    "plot_background": "transparent",
    "label_font_size": 11,
    "major_label_font_size": 11,
}
CONFIG = {
    "width": WIDTH,
    "height": HEIGHT,
    "show_legend": False,
    "allow_interruptions": True,  # a period without a value is a gap, not a line across it
    "dots_size": 2.5,
    "show_minor_x_labels": False,
    "x_labels_major_count": X_LABELS,
    "truncate_label": -1,
    "margin": 8,
    "margin_right": 36,  # the last date label is centred on the right edge
    "disable_xml_declaration": True,
}


def _label(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        return moment.strftime("%m-%d %H:%M" if (moment.hour, moment.minute) != (0, 0) else "%m-%d")
    return moment.isoformat()


def inline(svg: str, chart_id: str, title: str) -> str:
    """pygal's standalone SVG as an element of an HTML page (see the module docstring)."""
    root = ET.fromstring(svg)  # the parser leaves the comments out
    for parent in list(root.iter()):
        for child in [child for child in parent if child.tag == f"{{{SVG_NS}}}script"]:
            parent.remove(child)
    for element in root.iter(f"{{{SVG_NS}}}title"):
        element.text = title  # pygal's default title is "Pygal"
    old_id = root.attrib["id"]
    root.attrib["id"] = chart_id
    root.attrib["role"] = "img"
    text = ET.tostring(root, encoding="unicode")
    text = re.sub(r' xmlns(:\w+)?="[^"]*"', "", text)
    return text.replace(old_id, chart_id)
