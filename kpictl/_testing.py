"""Test seams: the hooks the process tests switch on through the environment, and nothing else.

Production code calls them at fixed points; with the variables unset they do nothing, and no
production signature (settings, options, service parameters) carries them.

- `KPICTL_DEBUG_STEP_SLEEP="run:3,product:8,fill:2"`: `pause(connection, step)` runs
  `pg_sleep(seconds)` inside the step's transaction, so that a test can signal the process while
  a step is running (the server sees a statement that a stop request can cancel). Steps: the
  pipeline's `run`, `product`, `factory`, `views`; history fill's `fill` (each chunk, after its
  writes); retention's `retention` (each DELETE batch, before it); revision 0008's `convert`
  (after each batch of its copy).
- `KPICTL_DEBUG_STEP_GATE="product"`: at the same points, the step waits for
  `pg_advisory_xact_lock_shared(GATE_KEY)` inside its transaction, so a test that holds
  `pg_advisory_lock(GATE_KEY)` decides when the step goes on (no race against a fixed sleep).
- `KPICTL_DEBUG_ADOPT_FAIL_AT=step`: `fail_after(step)` raises CommandFailed after that adoption
  step, inside the adoption's transaction.

The variables are read when a hook is reached, not at start-up; a malformed value is a
ConfigurationError (exit 2) at that point.
"""

from __future__ import annotations

import os

from sqlalchemy import Connection, text

from kpictl.errors import CommandFailed, ConfigurationError

STEP_SLEEP = "KPICTL_DEBUG_STEP_SLEEP"
STEP_GATE = "KPICTL_DEBUG_STEP_GATE"
GATE_KEY = 0x6B70_6963_7465_7374  # "kpictest": far from the job locks' 7-byte keys
ADOPT_FAIL_AT = "KPICTL_DEBUG_ADOPT_FAIL_AT"


def step_delays() -> dict[str, float]:
    """`KPICTL_DEBUG_STEP_SLEEP` as {step: seconds} (empty when unset)."""
    delays: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in os.environ.get(STEP_SLEEP, "").split(","))):
        step, _, seconds = item.partition(":")
        try:
            delays[step] = float(seconds or 0)
        except ValueError:
            raise ConfigurationError(f"invalid {STEP_SLEEP} item: {item!r}") from None
    return delays


def pause(connection: Connection, step: str) -> None:
    """Sleep on the server, inside `connection`'s transaction, when `step` is given a delay; then
    wait at the gate when `step` is gated."""
    seconds = step_delays().get(step)
    if seconds:
        connection.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    if step in os.environ.get(STEP_GATE, "").replace(" ", "").split(","):
        connection.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": GATE_KEY})


def adopt_fail_at() -> str | None:
    """The adoption step after which adoption fails on purpose (None when unset)."""
    return os.environ.get(ADOPT_FAIL_AT) or None


def fail_after(step: str) -> None:
    """Raise after `step` when `KPICTL_DEBUG_ADOPT_FAIL_AT` names it."""
    if adopt_fail_at() == step:
        raise CommandFailed(f"adoption interrupted after step {step!r} (test hook)")
