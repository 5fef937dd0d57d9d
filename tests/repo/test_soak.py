"""The soak of `benchmarks/soak.py`, short: hosts, timers, chaos, then every check (issue 12).

About two minutes: three simulated hosts fire aggregate, backfill, history fill and retention
for 60 s while SIGKILL, SIGTERM, terminated backends, a short idle_session_timeout and server
restarts strike; then 0 duplicate keys, 0 jobs left running, no overlapping completed jobs of
one lock, no traceback, every hour bucket present and equal to a clean recomputation. The full
run and its figures are in docs/RELIABILITY.md.

It runs on a private PostgreSQL 15 cluster (it restarts it), once per CI run: the second CI leg
(KPICTL_TEST_DATABASE_URL set) skips it, as it would only repeat the same run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks import soak

pytestmark = pytest.mark.slow


def test_soak_under_faults():
    if os.environ.get("KPICTL_TEST_DATABASE_URL"):
        pytest.skip("the soak runs once per CI run, in the first leg, on its own cluster")
    reason = soak.available()
    if reason and os.environ.get("CI"):
        pytest.fail(f"the soak cannot run in CI: {reason} (.ci/run installs postgresql-15)")
    if reason:
        pytest.skip(f"the soak needs Debian's postgresql-15 and unshare: {reason}")
    # not pytest's tmp_path: its parents are private to root, and the server runs as postgres
    workdir = Path(tempfile.mkdtemp(prefix="kpictl-soak-"))
    workdir.chmod(0o755)
    try:
        report = soak.soak(seconds=60, hosts=3, seed=7, workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert report["failures"] == [], report
    assert sum(report["faults"].values()) >= 20, report["faults"]
    assert report["invocations"] >= 30, report["cycles"]
