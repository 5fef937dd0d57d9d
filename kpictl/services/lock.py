"""The pipeline lock: one aggregate or backfill at a time across all hosts.

A session-level PostgreSQL advisory lock on a stable key, held on a dedicated connection.
"""

# pg_try_advisory_lock(bigint) key shared by every kpictl host: "kpictl" in ASCII.
PIPELINE_LOCK_KEY = 0x6B7069_63746C
