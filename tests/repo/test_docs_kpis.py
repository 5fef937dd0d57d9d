"""docs/KPI_DEFINITIONS.md states every KPI of the registry, with its level, unit, version and
a worked example: a KPI added to kpictl/kpis.py without docs fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kpictl.kpis import KPIS, KpiDefinition

DOC = Path(__file__).resolve().parents[2] / "docs" / "KPI_DEFINITIONS.md"


def sections() -> dict[str, str]:
    """`### \\`name\\`` heading -> the text up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^#{2,3} ", text, flags=re.M)
    found = {}
    for part in parts:
        match = re.match(r"`([a-z_]+)`\n", part)
        if match:
            found[match.group(1)] = part
    return found


def test_every_documented_kpi_is_in_the_registry():
    assert set(sections()) == {kpi.name for kpi in KPIS}


@pytest.mark.parametrize("kpi", KPIS, ids=lambda kpi: kpi.name)
def test_kpi_section(kpi: KpiDefinition):
    section = sections().get(kpi.name)
    assert section is not None, f"{kpi.name} has no '### `{kpi.name}`' section in {DOC.name}"
    assert f"| Level | {kpi.level} |" in section
    assert f"| Unit | `{kpi.unit}` |" in section
    assert f"| Version | {kpi.version} |" in section
    assert "**Definition.**" in section and "**Example.**" in section


def test_summary_table_lists_every_kpi():
    text = DOC.read_text(encoding="utf-8")
    for kpi in KPIS:
        assert f"| [`{kpi.name}`](#{kpi.name}) | {kpi.level} | `{kpi.unit}` |" in text
