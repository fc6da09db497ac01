"""The search's journal file (Optuna's JournalFileBackend: one JSON record per line), checked before
Optuna reads it, and the locks that let several processes share it.

A kill during an append leaves a torn last line, and Optuna then writes its next record onto the
end of it: the journal would fail on every later read. So before a search opens its journal, what
follows the last whole record (a torn write, or bytes appended by hand) is cut off and kept beside
it, with a message; a bad line with records after it is an edit nobody can undo safely, and is
refused with its line number.

Trials are shared through locks beside the journal (`JOURNAL.trials/`): the process running a trial
holds that trial's lock (the kernel drops it when the process dies, even by SIGKILL), so a RUNNING
trial whose lock is free was left by a dead process and can be tried again, while a live one is never
failed by another process; and asking for a trial happens under one lock, so `--trials N` is N in all.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from condnet import logs
from condnet.errors import CondnetError


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and "op_code" in record


def repair_journal(path: Path, log=logs.info) -> None:
    """Cut what follows the journal's last whole record (kept in PATH.cut); CondnetError naming the
    line when a bad line has records after it."""
    import optuna

    if not path.exists():
        return
    if not path.is_file():
        raise CondnetError(f"--storage {path} is not a file; give the search's journal file (or a new name)")
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))  # Optuna's own append lock
    lock.acquire()
    try:
        data = path.read_bytes()
        lines = data.split(b"\n")  # the last item is what follows the last newline
        good_end, bad = 0, None
        for number, line in enumerate(lines[:-1], start=1):
            if not _is_record(line):
                bad = bad or number
            elif bad is not None:
                raise CondnetError(
                    f"{path} line {bad} is not a journal record, and records follow it: the file was edited "
                    f"or corrupted; restore it from a copy, or remove line {bad} if you know what it held"
                )
            else:
                good_end += len(line) + 1
        if good_end < len(data):
            kept = path.with_name(path.name + ".cut")
            kept.write_bytes(data[good_end:])
            with open(path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
            records = len(lines[:-1]) if bad is None else bad - 1
            log(f"{path}: cut {len(data) - good_end} bytes after its last whole record (line {records}): "
                f"an interrupted write or appended data, kept in {kept}")  # fmt: skip
    finally:
        lock.release()


def locks_of(journal: Path) -> Path:
    """The directory of the journal's trial and ask locks."""
    directory = journal.with_name(journal.name + ".trials")
    directory.mkdir(exist_ok=True)
    return directory


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        what = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be opened ({exc.strerror})"
        raise CondnetError(f"the search lock {path} {what}; remove it") from None


@contextmanager
def held(path: Path):
    """Hold the lock at `path`, waiting for it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def hold_trial(locks: Path, number: int) -> int:
    """Take trial `number`'s lock for this process; close the returned descriptor to release it."""
    fd = _open(locks / f"{number}.lock")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # just asked for under the ask lock: free
    return fd


def trial_alive(locks: Path, number: int) -> bool:
    """Whether a live process holds trial `number`'s lock."""
    path = locks / f"{number}.lock"
    if not path.is_file():
        return False
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


class Journal:
    """The study's journal file as the search's shared storage (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def storage(self):
        import optuna

        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(self.path)))

    def prepare(self, log) -> None:
        repair_journal(self.path, log)

    def next_trial(self, study, wanted: int, counts):
        """(trial, what holds it while it runs) for a new trial, or None once `wanted` are done or
        running; `counts(study)` gives (done, running)."""
        locks = locks_of(self.path)
        with held(locks / "ask.lock"):  # count and ask as one step, across processes
            retry_abandoned(study, lambda trial: trial_alive(locks, trial.number))
            done, running = counts(study)
            if done + running >= wanted:
                return None
            trial = study.ask()
            return trial, _released(hold_trial(locks, trial.number))


@contextmanager
def _released(fd: int):
    try:
        yield
    finally:
        os.close(fd)


def retry_abandoned(study, alive) -> None:
    """Trials left RUNNING by a process that died (`alive(trial)` is False): failed, and asked again."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not alive(trial):
            mark_interrupted(study, trial)


def mark_interrupted(study, trial) -> None:
    """A trial its process abandoned: failed (not counted as done), and its parameters asked again."""
    import optuna

    study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
    if study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    study.enqueue_trial(trial.params, skip_if_exists=False)
