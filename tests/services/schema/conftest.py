"""Fixtures of the schema tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def engine_for():
    """make(url): an engine for a database the test made (disposed at the end)."""
    from kpictl.db.engine import make_engine
    from tests.conftest import test_settings

    made = []

    def make(url):
        engine = make_engine(url, test_settings(url))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()
