"""The job locks (`services/jobs/lock.py`) when their session dies: the guard refuses every
later commit (LockLost), and the fence lets a commit that passed its check end before the next
holder starts. With real processes and server faults: tests/cli/test_reliability.py."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from kpictl.errors import LockLost
from kpictl.services.jobs import lock as locks
from tests.helpers import scalar, terminate, wait_for


@pytest.mark.parametrize(
    "lock", [locks.PIPELINE, locks.RETENTION, locks.HISTORY_FILL, locks.MIGRATE]
)
def test_every_lock_refuses_a_commit_once_its_session_is_gone(engine, lock):
    """The guard every job uses: a commit after the lock session died rolls back, LockLost."""
    with locks.hold(engine, lock) as held:
        guarded = held.guard(engine)
        with guarded.begin() as conn:  # held: commits
            conn.execute(text("CREATE TABLE written_under_lock (id int)"))
        terminate(engine, held.backend_pid)
        with pytest.raises(LockLost, match=r"^lock lost"), guarded.begin() as conn:
            conn.execute(text("INSERT INTO written_under_lock VALUES (1)"))
    assert scalar(engine, "SELECT count(*) FROM written_under_lock") == 0


def test_the_next_holder_waits_for_a_checked_commit_of_the_previous_one(engine):
    """The fence: a commit that passed its lock check finishes before a new holder starts."""
    with locks.hold(engine, locks.PIPELINE) as first:
        work = first.guard(engine).connect()
        work.begin()
        first.verify(work)  # checked, about to commit
        terminate(engine, first.backend_pid)
        entered = threading.Event()

        def second_run() -> None:
            with locks.hold(engine, locks.PIPELINE, wait_seconds=30):
                entered.set()

        rival = threading.Thread(target=second_run)
        rival.start()
        # the rival takes the session lock, then waits at the fence
        wait_for(lambda: locks_held(engine, locks.PIPELINE.key) == 1)
        wait_for(lambda: locks_held(engine, locks.PIPELINE.fence_key) == 1)  # our shared one
        assert not entered.is_set()
        work.connection.dbapi_connection.commit()  # the checked commit ends (COMMIT itself)
        rival.join(timeout=30)
        work.close()
    assert entered.is_set()


def locks_held(engine, key: int) -> int:
    return scalar(
        engine,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1",
        high=key >> 32,
        low=key & 0xFFFFFFFF,
    )
