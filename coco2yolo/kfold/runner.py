"""Running an experiment's jobs: skipping what is done, claiming what runs, one job per device.

- **Done**: a job's stamp (``.kfold/done/JOB.json``) holds the fingerprint of its command and of its
  inputs' content; a job whose outputs exist and whose fingerprint is unchanged is skipped, so a crash,
  a Ctrl-C or an ``--only`` re-run resumes without redoing finished work. A training interrupted midway
  continues from its ``last.pt`` (``train_yolo.py --resume``) when nothing it depends on changed.
- **Claims**: before a job starts, its claim file (``.kfold/claims/JOB``) is created exclusively; the
  running process refreshes it every few seconds. A second process (another shard, on this machine or
  another sharing the folder) never runs a claimed job; a claim left by a dead process (same host, pid
  gone) or not refreshed for a minute is taken over.
- **Devices**: training and prediction jobs run at once, one per device of ``--devices`` (a model that
  names several devices takes them together); other commands run one at a time beside them.
- **Shards**: ``--shard I/N`` runs only shard I's jobs (:func:`coco2yolo.kfold.plan.shard_of`) and waits for
  the jobs of other shards it depends on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coco2yolo.errors import UserError
from coco2yolo.fileio import open_regular, write_json
from coco2yolo.kfold.experiment import Experiment
from coco2yolo.kfold.plan import DEVICE, Job, env_for, shard_of

HEARTBEAT = 5.0     # seconds between refreshes of the claims a process holds
STALE = 60.0        # a claim not refreshed for this long belongs to a process that is gone
_HOST = socket.gethostname()


def _safe(job_id: str) -> str:
    return job_id.replace("/", "__")


class Fingerprints:
    """Content digests of files and folders, each computed once per (path, size, mtime)."""

    def __init__(self):
        self._cache: dict[tuple, str] = {}

    def of(self, path: Path) -> str:
        try:
            st = path.stat()
        except FileNotFoundError:
            return "missing"
        if path.is_dir():
            h = hashlib.sha256()
            for p in sorted(path.rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(path)).encode())
                    h.update(self.of(p).encode())
            return h.hexdigest()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._cache:
            h = hashlib.sha256()
            with open_regular(path, "input") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self._cache[key] = h.hexdigest()
        return self._cache[key]

    def job(self, job: Job) -> str:
        h = hashlib.sha256(json.dumps(job.argv if job.argv is not None else [job.id, job.note]).encode())
        for p in job.inputs:
            h.update(str(p).encode())
            h.update(self.of(p).encode())
        return h.hexdigest()


class Claims:
    """Exclusive claim files with a heartbeat (see the module docstring)."""

    def __init__(self, folder: Path, who: str):
        self.folder, self.who = folder, who
        folder.mkdir(parents=True, exist_ok=True)
        self.held: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            for p in list(self.held):
                with contextlib.suppress(OSError):
                    os.utime(p)

    def holder(self, job_id: str) -> str | None:
        p = self.folder / _safe(job_id)
        try:
            return p.read_text(encoding="utf-8").strip() or "?"
        except OSError:
            return None

    def _stale(self, p: Path) -> bool:
        try:
            text, age = p.read_text(encoding="utf-8"), time.time() - p.stat().st_mtime
        except OSError:
            return False
        fields = dict(f.split("=", 1) for f in text.split() if "=" in f)
        if fields.get("host") == _HOST and fields.get("pid", "").isdigit():
            pid = int(fields["pid"])
            if pid != os.getpid():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                except PermissionError:
                    pass
        return age > STALE

    def take(self, job_id: str) -> bool:
        p = self.folder / _safe(job_id)
        for _ in range(2):
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale(p):
                    return False
                with contextlib.suppress(OSError):  # only one taker can move the stale claim away
                    os.rename(p, p.with_name(f"{p.name}.stale.{_HOST}.{os.getpid()}"))
                    os.unlink(p.with_name(f"{p.name}.stale.{_HOST}.{os.getpid()}"))
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{self.who} host={_HOST} pid={os.getpid()} since={dt.datetime.now().isoformat(timespec='seconds')}\n")
            self.held.add(p)
            return True
        return False

    def release(self, job_id: str) -> None:
        p = self.folder / _safe(job_id)
        self.held.discard(p)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()

    def close(self) -> None:
        self._stop.set()
        for p in list(self.held):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.held.clear()


@dataclass
class Running:
    job: Job
    proc: subprocess.Popen
    devices: list[str]
    started: float
    log: TextIO


@dataclass
class Runner:
    exp: Experiment
    jobs: list[Job]
    devices: list[str]
    shard: int = 0
    shards: int = 1
    only: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    estimates: dict[str, Any] | None = None   # job id -> Estimate (coco2yolo.kfold.estimate), for progress and ETA
    learn: Any = None                         # an Estimator: records each finished training's measured speed

    def __post_init__(self):
        self.state = self.exp.out / ".kfold"
        self.by_id = {j.id: j for j in self.jobs}
        self.owner = shard_of(self.jobs, self.shards)
        self.fp = Fingerprints()
        self._done: dict[str, bool] = {}
        self.ran: list[str] = []

    # --- status -------------------------------------------------------------------------------
    def _stamp(self, job: Job) -> Path:
        return self.state / "done" / f"{_safe(job.id)}.json"

    def done(self, job: Job) -> bool:
        """Finished with the current inputs (its dependencies done first)."""
        if self._done.get(job.id):
            return True
        if not all(self.done(self.by_id[d]) for d in job.deps):
            return False
        try:
            stamp = json.loads(self._stamp(job).read_text())
        except (OSError, ValueError):
            return False
        ok = stamp.get("fingerprint") == self.fp.job(job) and all(p.exists() for p in job.outputs)
        if ok:
            self._done[job.id] = True
        return ok

    def mine(self, job: Job) -> bool:
        return self.owner[job.id] == self.shard and (self.only is None or job.step == self.only)

    def status(self, job: Job, claims: Claims | None = None) -> str:
        if self.done(job):
            return "done"
        holder = claims.holder(job.id) if claims else None
        if holder:
            return f"running ({holder})"
        if not all(self.done(self.by_id[d]) for d in job.deps):
            return "waits"
        return "ready"

    # --- logging ------------------------------------------------------------------------------
    def _log(self, kind: str, job: Job, text: str) -> None:
        line = "\t".join([dt.datetime.now().isoformat(timespec="seconds"), f"{_HOST}:{os.getpid()}",
                          f"shard {self.shard}/{self.shards}", kind, job.id, text.replace("\n", " ")])
        (self.exp.out).mkdir(parents=True, exist_ok=True)
        with open(self.exp.out / "commands.log", "a", encoding="utf-8") as fh:  # one short line: atomic append
            fh.write(line + "\n")

    # --- running ------------------------------------------------------------------------------
    def _argv(self, job: Job, devices: list[str]) -> list[str]:
        argv = [",".join(devices) if a == DEVICE else a for a in job.argv]
        if job.step == "train":
            argv += self._resume_flag(job)
        return argv

    def _resume_flag(self, job: Job) -> list[str]:
        """``--resume`` when an earlier attempt of this very job (same fingerprint) left an unfinished run."""
        name = job.argv[job.argv.index("--name") + 1]
        last = self.exp.out / "runs" / "train" / name / "weights" / "last.pt"
        try:
            started = json.loads((self.state / "started" / f"{_safe(job.id)}.json").read_text())
        except (OSError, ValueError):
            return []
        if started.get("fingerprint") != self.fp.job(job) or not last.is_file() or not _unfinished(last):
            return []
        return ["--resume"]

    def _finish(self, job: Job, seconds: float, claims: Claims) -> None:
        missing = [str(p) for p in job.outputs if not p.exists()]
        if missing:
            raise UserError(f"step {job.id} finished without writing {missing[0]}")
        write_json(self._stamp(job), {"job": job.id, "fingerprint": self.fp.job(job), "seconds": seconds,
                                      "host": _HOST, "shard": f"{self.shard}/{self.shards}",
                                      "finished": dt.datetime.now().isoformat(timespec="seconds")})
        self._done[job.id] = True
        claims.release(job.id)
        self.ran.append(job.id)
        self._log("END", job, f"exit 0 in {seconds:.1f} s")
        if job.step == "train" and self.learn is not None:
            self._learn(job)
        self._progress(f"done {job.id} in {_dur(seconds)}")

    def _learn(self, job: Job) -> None:
        """Feed a finished training's measured seconds per epoch to the estimates of the jobs still to come."""
        try:
            side = json.loads(job.outputs[1].read_text())
            data = Path(job.argv[job.argv.index("--data") + 1]).parent
            n_train = len(json.loads((data / "train.json").read_text())["images"])
            n_val = len(json.loads((data / "val.json").read_text())["images"])
        except (OSError, ValueError, KeyError, IndexError):
            return
        self.learn.learn(job.argv, side, n_train, n_val)

    def _progress(self, what: str) -> None:
        """One line: jobs done of this run's, what runs, and the time left from the estimates."""
        mine = [j for j in self.jobs if self.mine(j)]
        done = sum(1 for j in mine if self._done.get(j.id))
        line = f"[{done}/{len(mine)}] {what}"
        if self.estimates:
            left = sum(self.estimates[j.id].seconds for j in mine if not self._done.get(j.id) and j.id in self.estimates)
            slots = max(1, len(self.devices))
            line += f"; about {_dur(left / slots)} left"
        print(line, file=self.out, flush=True)

    def _start(self, job: Job, devices: list[str], claims: Claims) -> Running:
        argv = self._argv(job, devices)
        shown = job.shown(self.exp, ",".join(devices))
        if "--resume" in argv:
            shown += " --resume"
        est = f" (estimated {_dur(self.estimates[job.id].seconds)})" if self.estimates and job.id in self.estimates else ""
        self._progress(f"start {job.id} on {','.join(devices) or 'cpu'}{est}")
        print(f"$ {shown}", file=self.out, flush=True)
        self._log("START", job, shown)
        if job.step == "train":
            write_json(self.state / "started" / f"{_safe(job.id)}.json", {"fingerprint": self.fp.job(job)})
        log_path = self.exp.out / "logs" / f"{_safe(job.id)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env_for(self.exp),
                                start_new_session=True, preexec_fn=_die_with_parent)
        return Running(job, proc, devices, time.time(), log)

    def _run_internal(self, job: Job, claims: Claims) -> None:
        print(f"\n$ {job.shown(self.exp)}", file=self.out, flush=True)
        self._log("START", job, job.shown(self.exp))
        t0 = time.time()
        job.internal()
        self._finish(job, time.time() - t0, claims)

    def run(self) -> int:
        """Run this shard's pending jobs; return 0, or raise UserError naming the step that failed."""
        selected = [j for j in self.jobs if self.mine(j)]
        if self.only:
            for j in selected:
                blocked = [d for d in j.deps if self.by_id[d].step != self.only and not self.done(self.by_id[d])]
                if blocked:
                    raise UserError(f"--only {self.only}: {j.id} needs {blocked[0]}, which is not done; run the "
                                    f"experiment without --only (or with --only {self.by_id[blocked[0]].step}) first")
        pending = []
        for j in selected:
            if self.done(j):
                print(f"skip {j.id} (done)", file=self.out)
            else:
                pending.append(j)
        if not pending:
            print("nothing to do: every step of this shard is done", file=self.out)
            return 0
        claims = Claims(self.state / "claims", f"shard={self.shard}/{self.shards}")
        running: list[Running] = []
        failure: tuple[Job, int] | None = None
        last_wait = 0.0
        try:
            while pending or running:
                for r in list(running):
                    rc = r.proc.poll()
                    if rc is None:
                        continue
                    r.log.close()
                    running.remove(r)
                    if rc == 0:
                        self._finish(r.job, time.time() - r.started, claims)
                    else:
                        claims.release(r.job.id)
                        self._log("END", r.job, f"exit {rc} in {time.time() - r.started:.1f} s")
                        failure = failure or (r.job, rc)
                if failure:
                    pending = []
                    if not running:
                        break
                started = False
                for job in list(pending):
                    if not all(self.done(self.by_id[d]) for d in job.deps):
                        continue
                    if self.done(job):  # finished by another process meanwhile
                        pending.remove(job)
                        continue
                    busy = {d for r in running for d in r.devices}
                    if job.device:
                        want = job.devices or [d for d in self.devices if d not in busy][:1]
                        if not want or busy & set(want):
                            continue
                    elif job.argv is not None and any(not r.job.device for r in running):
                        continue  # one non-device command at a time
                    else:
                        want = []
                    if not claims.take(job.id):
                        continue
                    pending.remove(job)
                    started = True
                    if job.internal is not None:
                        self._run_internal(job, claims)
                    else:
                        running.append(self._start(job, want, claims))
                if not started:
                    if pending and not running and time.time() - last_wait > 60:
                        waiting = [j.id for j in pending][:3]
                        print(f"waiting for other shards or processes (next: {', '.join(waiting)})", file=self.out,
                              flush=True)
                        last_wait = time.time()
                    time.sleep(0.3)
        except BaseException:
            for r in running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r.proc.pid, 15)
            for r in running:
                r.proc.wait()
                r.log.close()
                self._log("END", r.job, "interrupted")
            raise
        finally:
            claims.close()
        if failure:
            job, rc = failure
            raise UserError(f"step {job.id} failed (exit {rc}); its output is in "
                            f"{self.exp.out / 'logs' / (_safe(job.id) + '.log')}: {_tail(self.exp.out, job)}")
        return 0


def _dur(seconds: float) -> str:
    from coco2yolo import cli

    return cli.format_hours(max(seconds, 0.0) / 3600)


def _die_with_parent() -> None:
    """In a job's process: receive SIGTERM when the runner dies, even by kill -9 (Linux), so that no job
    keeps running unclaimed; elsewhere nothing."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(out: Path, job: Job) -> str:
    try:
        lines = [ln for ln in (out / "logs" / f"{_safe(job.id)}.log").read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def _unfinished(last: Path) -> bool:
    """Whether an Ultralytics ``last.pt`` is a run that can still be resumed (epoch not -1); read as data."""
    from coco2yolo.checkpoint.reader import Malformed, RefusedGlobal, read_raw

    try:
        obj = read_raw(last).obj
    except (Malformed, RefusedGlobal, UserError, OSError):  # an unreadable last.pt: start the job afresh
        return False
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return isinstance(epoch, int) and not isinstance(epoch, bool) and epoch != -1
