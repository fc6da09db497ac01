"""A search's study in a database (`--storage postgresql://USER@HOST:PORT/DB`, Optuna's RDB storage), so
that `condnet search` processes on several machines share one study.

The tables are created under the same lock (two processes creating them at once collide).
Liveness by heartbeat (Optuna's): a process running a trial records a heartbeat every HEARTBEAT_S
seconds; a RUNNING trial without one for GRACE_S seconds was abandoned (its process or machine died),
and is failed and asked again. Counting and asking run under a PostgreSQL advisory lock, so that
`--trials N` is N in all across machines.
"""

from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager

from condnet.errors import CondnetError
from condnet.search.journal import mark_interrupted

HEARTBEAT_S = 30
GRACE_S = 120


def is_url(storage) -> bool:
    return "://" in str(storage)


class Database:
    def __init__(self, url: str, study_name: str):
        self.url = url
        # the advisory lock's key: one per study, a signed 64-bit number
        self.key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)

    def storage(self):
        import optuna

        try:
            # under the lock: two processes creating Optuna's tables at once collide
            with self._locked(), warnings.catch_warnings():  # "heartbeat_interval is experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    self.url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=lambda study, trial: mark_interrupted(study, trial),
                )  # fmt: skip
        except Exception as exc:  # sqlalchemy's errors (no server, bad credentials, no driver) vary
            raise CondnetError(f"cannot open the study database {self.url} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0]})") from None  # fmt: skip

    def prepare(self, log) -> None:
        pass

    @contextmanager
    def _locked(self):
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        finally:
            engine.dispose()

    def next_trial(self, study, wanted: int, counts):
        """As Journal.next_trial; the trial is held by its heartbeat."""
        import optuna
        from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses

        with self._locked():
            optuna.storages.fail_stale_trials(study)
            done, running = counts(study)
            if done + running >= wanted:
                return None
            trial = study.ask()
            return trial, get_heartbeat_thread(trial._trial_id, study._storage)
