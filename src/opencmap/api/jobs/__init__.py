"""Query jobs of the API: persistence (:mod:`.store`: SQLite rows, result files, retention) apart
from execution (:mod:`.worker`: worker threads, the synchronous lane, the memory budget)."""

from __future__ import annotations

from opencmap.api.jobs.store import (
    _SCHEMA,
    CANCELLED_MESSAGE,
    DB_FORMAT_VERSION,
    EXPIRED_MESSAGE,
    JOB_STATES,
    RESULT_FILE,
    SAVING_FILE,
    JobDB,
    JobState,
    is_disk_full,
    write_atomic,
)
from opencmap.api.jobs.worker import MAX_PENDING_SAVES, SYNC_INTERRUPTED, JobRunner, MemoryBudget, ShutdownRequested, result_nbytes

__all__ = [
    "JobDB",
    "JobRunner",
    "JobState",
    "JOB_STATES",
    "EXPIRED_MESSAGE",
    "CANCELLED_MESSAGE",
    "DB_FORMAT_VERSION",
    "RESULT_FILE",
    "SAVING_FILE",
    "MemoryBudget",
    "ShutdownRequested",
    "SYNC_INTERRUPTED",
    "MAX_PENDING_SAVES",
    "is_disk_full",
    "result_nbytes",
    "write_atomic",
    "_SCHEMA",
]
