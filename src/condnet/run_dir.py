"""A run directory: its file names, its one marker of completion, atomic writes and its lock.

A run is trained in a hidden sibling, `.NAME.partial/`, and renamed to NAME only when every file is
written, `finished.json` last. So a directory at NAME is always a whole run: a killed or failed run
leaves the previous run at NAME untouched (`--force` replaces it only at that rename), and its
`.partial` sibling keeps the training state for `condnet train --resume`. Every reader asks
`is_finished` (finished.json) and says what to do when a run is not.

Replacing a run takes two renames (old run aside, new run in); a kill between them is repaired by the
next command on that directory (`recover`). Every file is written by write-then-rename.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from condnet.errors import CondnetError

CONFIG = "config.toml"
EPOCH_LOG = "metrics.jsonl"  # one line per finished epoch
METRICS = "metrics.json"  # the final report
ANALYSIS = "analysis.json"
TIMING = "timing.json"  # written by `condnet reproduce` after training
TRAIN_STATE = "train_state.pt"  # the full training state after the last finished epoch (partial only)
FAILED = "failed.txt"  # why a run failed (partial only)
FINISHED = "finished.json"  # the marker of completion, written last
LEARNING_CURVES = "learning_curves.png"


def policy_figure_name(layer: int) -> str:
    """The paper's Figure 1 view of hidden layer `layer` (from 0)."""
    return f"policy_layer{layer + 1}.png"


def _reason(exc: Exception) -> str:
    return "missing" if isinstance(exc, FileNotFoundError) else getattr(exc, "strerror", None) or str(exc)


_HASHED: dict[tuple, str] = {}  # (path, size, mtime) -> SHA-256: each file is hashed once per process


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _HASHED[key]


def _unreadable(path: Path, exc: Exception) -> CondnetError:
    return CondnetError(f"{path} cannot be read ({_reason(exc)}); retrain the run or restore it")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `path` so that a reader sees the old file or the whole new one, never a part. A failed write
    (a full disk) leaves no temporary file and names the file it could not write."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CondnetError(f"cannot write {path} ({exc.strerror or exc})") from None


def write_json(path: Path, value) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


def write_csv(rows: list[dict], path: Path, fields: list[str] | None = None) -> None:
    """Rows as CSV (columns: `fields`, else every key in first-seen order), by write-then-rename."""
    fields = fields or list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def save_figure(figure, path: Path, **options) -> None:
    """A matplotlib figure as PNG, by write-then-rename."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **options)
    write_atomic(Path(path), buffer.getvalue())


class RunDir:
    """The run directory at `path`, with its siblings `.NAME.partial` (a run being trained),
    `.NAME.old` (a replaced run, for a moment) and `.NAME.lock`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.name or self.path.name in (".", ".."):
            self.path = self.path.resolve()
        if not self.path.name:
            raise CondnetError(f"{path} cannot be a run directory (it has no name): give one like runs/NAME")
        self.partial = self._sibling("partial")
        self._old = self._sibling("old")
        self._lock = self._sibling("lock")
        self.recovered: str | None = None

    def _sibling(self, kind: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{kind}")

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def is_finished(self) -> bool:
        return (self.path / FINISHED).is_file()

    def has_partial(self) -> bool:
        """Whether an unfinished run waits in `.partial` to be resumed. One killed before its config.toml
        was written holds nothing to resume (the next run replaces it without --force)."""
        return (self.partial / CONFIG).is_file() and not (self.partial / FINISHED).is_file()

    def commit_interrupted(self) -> bool:
        """Whether a kill interrupted `commit`: a finished run waits in `.partial`, or a replaced run was
        left aside with nothing in its place (`recover`, run by every writing command, repairs both)."""
        return (self.partial / FINISHED).is_file() or (self._old.is_dir() and not self.path.exists())

    def repair(self) -> str | None:
        """Repair an interrupted commit (under the lock); what was done, or None."""
        if not self.commit_interrupted():
            return None
        with self.lock():
            return self.recovered

    def epochs_done(self) -> int:
        """Epochs recorded by the unfinished run in `.partial` (0 when none)."""
        log = self.partial / EPOCH_LOG
        return len(log.read_text().splitlines()) if log.is_file() else 0

    # Readers of a finished run's records: every command reads them here, and a missing or corrupt file
    # (or one without the fields every run has) is a CondnetError naming it, never a traceback.

    def verify(self, *names: str) -> None:
        """CondnetError unless the named files (default: every file finished.json lists) have the SHA-256
        recorded when the run finished: a file edited, swapped from another run or corrupted since is
        refused. Runs finished before the hashes were recorded are not checked."""
        try:
            recorded = json.loads((self.path / FINISHED).read_text()).get("sha256", {})
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise _unreadable(self.path / FINISHED, exc) from None
        for name in names or recorded:
            path = self.path / name
            if name in recorded and (not path.is_file() or _sha256(path) != recorded[name]):
                what = "is missing" if not path.is_file() else "is not the file the run finished with"
                raise CondnetError(
                    f"{path} {what} (its SHA-256 was recorded in {FINISHED}): edited, copied from another "
                    f"run or corrupted; restore it from the original run, or train the run again"
                )

    def metrics(self) -> dict:
        """metrics.json, the final report (test_error per mode, activation_rate, macs, ...)."""
        return self._record(METRICS, ("test_error", "activation_rate", "macs", "dense_macs", "epochs"))

    def analysis(self) -> dict:
        """analysis.json (best_epoch, class specificity, ...)."""
        return self._record(ANALYSIS, ("best_epoch",))

    def history(self) -> list[dict]:
        """metrics.jsonl: one record per trained epoch (epoch, train/valid loss and error, ...)."""
        path = self.path / EPOCH_LOG
        if self.is_finished():
            self.verify(EPOCH_LOG)
        try:
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _unreadable(path, exc) from None
        if not all(isinstance(r, dict) and "epoch" in r and "valid_error" in r for r in records):
            raise CondnetError(f"{path} is not a log of epochs; retrain the run or restore it")
        return records

    def best_valid_error(self) -> float:
        """The validation error of the epoch that early stopping kept (the run's model)."""
        best = self.analysis()["best_epoch"]
        return next(r["valid_error"] for r in self.history() if r["epoch"] == best)

    def timing(self) -> dict | None:
        """timing.json (`condnet reproduce` and `frontier` time a run after training), or None."""
        return self._record(TIMING, ()) if (self.path / TIMING).is_file() else None

    def write_timing(self, timing: dict) -> None:
        write_json(self.path / TIMING, timing)

    def _record(self, name: str, fields: tuple[str, ...]) -> dict:
        path = self.path / name
        if self.is_finished():
            self.verify(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _unreadable(path, exc) from None
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise CondnetError(f"{path} lacks {', '.join(missing)}; retrain the run or restore it")
        return record

    def require_finished(self) -> Path:
        """The path, or a CondnetError that says why it is not a finished run and what to do. Every file
        that finished.json lists must still be the file it recorded (its SHA-256)."""
        if self.is_finished():
            self.verify()
            return self.path
        if self.commit_interrupted():
            raise CondnetError(
                f"a command was killed while it put the run of {self.path} in place: "
                f"`condnet train --resume {self.path}` puts it in place"
            )
        unfinished = (
            f"; an unfinished run of it is in {self.partial} (after {self.epochs_done()} epochs): "
            f"`condnet train --resume {self.path}` continues it"
            if self.has_partial()
            else ""
        )
        if not self.path.exists():
            raise CondnetError(f"no run at {self.path}{unfinished}")
        raise CondnetError(
            f"{self.path} is not a finished run (it has no {FINISHED}: not a run directory, or one written "
            f"by an older condnet; train it again){unfinished}"
        )

    @contextmanager
    def lock(self):
        """Hold this directory's lock (released by the kernel when the process dies, even by SIGKILL);
        a second command on the same directory gets a clear error instead of racing the first."""
        import fcntl

        longest = f".{self.path.name}.partial"
        if len(longest.encode()) > 255:  # NAME_MAX of Linux and macOS file systems
            raise CondnetError(
                f"the run directory's name is too long ({len(self.path.name)} characters): condnet writes "
                f"{longest[:20]}... beside it, and a name has at most 255 bytes; choose a name of at most 246"
            )
        for path in (self.path, self.partial, self._old):
            if path.is_symlink():  # renamed, replaced and removed below: a link would move, not its target
                instead = (f"give its target {os.path.realpath(path)} as --out" if path == self.path
                           else "remove it (condnet did not make it)")  # fmt: skip
                raise CondnetError(f"{path} is a symbolic link; runs are written at real paths: {instead}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a symbolic link planted at the lock's name is refused, never followed (the
            # lock is truncated below, and the file it points to is not ours to truncate)
            fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CondnetError(
                    f"{self._lock} is a symbolic link; condnet never follows links where it writes: remove "
                    f"it (it is only a lock file) or choose another --out"
                ) from None
            raise CondnetError(
                f"cannot write in {self.path.parent} ({exc.strerror}); choose another --out"
            ) from None
        if os.fstat(fd).st_nlink > 1:  # a hard link to another file: not ours to truncate either
            os.close(fd)
            raise CondnetError(
                f"{self._lock} is a hard link to another file; remove it (it is only a lock file) or "
                f"choose another --out"
            )
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise CondnetError(
                    f"another condnet command (process {holder}) is writing {self.path}; wait for it to "
                    f"end or choose another --out"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.recover()
            yield self
        finally:
            os.close(fd)  # releases the lock

    def recover(self) -> None:
        """Finish what a kill interrupted in `commit` (call with the lock held): a whole new run is put
        in place; a replaced run left aside is removed, or put back if nothing took its place.
        `recovered` says what was done (None: nothing)."""
        self.recovered = None
        if (self.partial / FINISHED).is_file():
            self._put_in_place()
            self.recovered = "put the finished run in place"
        elif self._old.exists():
            if self.path.exists():
                shutil.rmtree(self._old)
            else:
                os.replace(self._old, self.path)
                self.recovered = "put the previous run back in place"

    def start(self, resume: bool) -> Path:
        """The `.partial` directory to train in: kept (resume) or made empty (a new run)."""
        if resume:
            if not self.has_partial():
                finished = f"; {self.path} holds a finished run" if self.is_finished() else ""
                raise CondnetError(f"there is no unfinished run of {self.path} to resume{finished}")
            return self.partial
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir()
        return self.partial

    def commit(self) -> None:
        """Mark the run in `.partial` finished and put it at `path`, replacing what was there."""
        for stale in self.partial.glob(".*.tmp"):  # what a kill left of an atomic write: never a run file
            stale.unlink()
        files = sorted(p.name for p in self.partial.iterdir() if p.name != TRAIN_STATE)
        finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        hashes = {name: _sha256(self.partial / name) for name in files}
        write_json(self.partial / FINISHED, {"finished": finished, "files": files, "sha256": hashes})
        self._put_in_place()

    def _put_in_place(self) -> None:
        (self.partial / TRAIN_STATE).unlink(missing_ok=True)  # only needed to resume
        if self.path.exists():
            if self._old.exists():
                shutil.rmtree(self._old)
            os.replace(self.path, self._old)
        os.replace(self.partial, self.path)
        if self._old.exists():
            shutil.rmtree(self._old)
