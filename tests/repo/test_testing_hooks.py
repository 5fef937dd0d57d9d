"""The test seams of `kpictl/_testing.py`: read from the environment, no-ops when unset."""

from __future__ import annotations

import time

import pytest

from kpictl import _testing
from kpictl.errors import CommandFailed, ConfigurationError


def test_unset_hooks_do_nothing(engine):
    assert _testing.step_delays() == {} and _testing.adopt_fail_at() is None
    with engine.connect() as connection:
        _testing.pause(connection, "run")
    _testing.fail_after("check")


def test_step_sleep_pauses_on_the_server(engine, monkeypatch):
    monkeypatch.setenv("KPICTL_DEBUG_STEP_SLEEP", "run:0.3, views")
    assert _testing.step_delays() == {"run": 0.3, "views": 0.0}
    started = time.monotonic()
    with engine.connect() as connection:
        _testing.pause(connection, "views")
        _testing.pause(connection, "product")
        _testing.pause(connection, "run")
    assert time.monotonic() - started >= 0.3


def test_malformed_step_sleep_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("KPICTL_DEBUG_STEP_SLEEP", "run:soon")
    with pytest.raises(ConfigurationError, match="invalid KPICTL_DEBUG_STEP_SLEEP item"):
        _testing.step_delays()


def test_adopt_fail_at(monkeypatch):
    monkeypatch.setenv("KPICTL_DEBUG_ADOPT_FAIL_AT", "dedupe")
    assert _testing.adopt_fail_at() == "dedupe"
    _testing.fail_after("check")
    with pytest.raises(CommandFailed, match="after step 'dedupe'"):
        _testing.fail_after("dedupe")
