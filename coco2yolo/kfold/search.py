"""The recipe search: Optuna trials of a model entry, each a ``train_yolo.py`` run pruned early.

Each trial is the base entry with values drawn from the space by Optuna's sampler (TPE, seeded), trained on
fold ``fold``'s training images and validated on its validation images. The training process reports every
epoch's validation mAP50 to the trial against the seconds of training spent (``train_yolo.py --trial``), so
the pruner (Hyperband, successive halving, or none) compares trials at equal cost, whatever their speed, and
stops the poor ones early. The study lives in Optuna's RDB storage (SQLite by default; a PostgreSQL URL lets
several machines, e.g. a SLURM array, work on one study): every process asks the storage for its own trial,
so no trial runs twice, and a killed search resumes where it stopped — a trial whose process died is failed
and retried once with the same values.

The search ends when ``trials`` trials finished (complete or pruned) or its ``budget`` (the device seconds of
all trials, wherever they ran) is spent; each trial is given at most what is left of the budget (``--time``).
It writes ``OUT/search/trials.csv`` (one row per trial) and ``OUT/search/best.yaml`` (the best complete
trial's entry, named ``search_best``), which the k-fold run then trains on every fold.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from coco2yolo.commands import script_command
from coco2yolo.errors import UserError
from coco2yolo.fileio import make_dirs, write_text
from coco2yolo.kfold.experiment import SEARCH_BEST, Experiment, Search, check_entry
from coco2yolo.training.budget import quiet_optuna as _quiet_optuna
from coco2yolo.training.storage import ENV as STORAGE_ENV
from coco2yolo.training.storage import masked

HEARTBEAT = 20      # seconds between heartbeats of a running trial
MAX_FAILED_IN_A_ROW = 3
GRACE = 90          # a running trial without a heartbeat for this long belongs to a dead process
_HOST = socket.gethostname()


def _retry_callback() -> Any:
    """Optuna's callback that retries (once, with the same values) a trial whose process stopped beating."""
    import optuna.storages as storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    return cls(max_retry=1)


def storage_of(search: Search) -> Any:
    from optuna.storages import RDBStorage

    from coco2yolo.training.storage import open_storage

    _quiet_optuna()
    stale = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in \
        RDBStorage.__init__.__code__.co_varnames else "failed_trial_callback"
    return open_storage(search.storage, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                        **{stale: _retry_callback()})


def study_of(search: Search, storage: Any) -> Any:
    import optuna

    pruner = {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=search.min_resource or 1,
                                                                   reduction_factor=3),
              "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                  min_resource=search.min_resource or "auto", reduction_factor=3),
              "none": optuna.pruners.NopPruner}[search.pruner]()
    return optuna.create_study(study_name=search.study, storage=storage, load_if_exists=True, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=5),
                               pruner=pruner)


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """Values for one trial: a list is categorical; {low, high} an int or float range (log, step optional)."""
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = trial.suggest_categorical(key, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log") and \
                isinstance(spec.get("step", 1), int):
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            params[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")),
                                              step=spec.get("step"))
    return params


def _spent(study: Any) -> float:
    """Device seconds of every trial that ended (complete, pruned or failed), in any process."""
    return sum(float(t.user_attrs.get("seconds", 0.0)) for t in study.get_trials(deepcopy=False))


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def _fail_dead_local(study: Any, storage: Any) -> None:
    """Running trials of a process on this host that is gone (a killed search): failed now (and retried by the
    storage's callback) rather than after the heartbeat grace period."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner", "")
        host, _, pid = owner.rpartition(":")
        if host != _HOST or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            _retry_callback()(study, storage.get_trial(t._trial_id))


class SearchRun:
    """One process's part of a search: a worker thread per device asks, trains, tells."""

    def __init__(self, exp: Experiment, devices: list[str], log: Any = None):
        assert exp.search is not None
        self.exp, self.search, self.devices = exp, exp.search, devices
        self.out_dir = exp.out / "search"
        self.data = exp.out / "data" / f"fold{self.search.fold}" / "data.yaml"
        self.log = log or sys.stdout
        self.storage = storage_of(self.search)
        self.study = study_of(self.search, self.storage)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._failed_in_a_row = 0
        self.failure: str | None = None

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.log, flush=True)

    def left(self) -> float | None:
        if self.search.budget_hours is None:
            return None
        return self.search.budget_hours * 3600 - _spent(self.study)

    def done(self) -> bool:
        left = self.left()
        return _finished(self.study) >= self.search.trials or (left is not None and left <= 30)

    def argv(self, number: int, entry: dict[str, Any], device: str, cap: float | None) -> list[str]:
        """The trial's command; a time-budgeted base gets at most what is left of the search's budget (an
        epoch-budgeted one keeps its schedule and is stopped by :meth:`_one` if the budget runs out)."""
        args, _ = check_entry(entry, f"search trial {number}")  # its own flags, and --set for other Ultralytics keys
        if cap is not None and entry.get("time") is not None:
            hours = min(cap / 3600, _as_hours(entry["time"]))
            args = _replace_flag(args, "--time", f"{hours:.6f}")
        return [*script_command("train"), "--data", str(self.data), *args, "--name", f"search_t{number}",
                "--weights-dir", str(self.out_dir / "weights"), "--exist-ok", "--device", device,
                "--trial", str(number), "--study", self.search.study, "--storage", f"env:{STORAGE_ENV}"]

    def _heartbeat(self, trial_id: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT):
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat only risks a retry
                pass

    def _one(self, device: str) -> bool:
        """Run one trial on ``device``; False when the search is done."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        with self._lock:
            fail_stale_trials(self.study)
            _fail_dead_local(self.study, self.storage)
            if self.done() or self._stop.is_set():
                return False
            trial = self.study.ask()
            params = suggest(trial, self.search.space)
            self.storage.set_trial_user_attr(trial._trial_id, "owner", f"{_HOST}:{os.getpid()}")
            self.storage.record_heartbeat(trial._trial_id)
        entry = {**self.search.base, **params}
        argv = self.argv(trial.number, entry, device, self.left())
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        self._say(f"search: trial {trial.number} on {device}: {shown}")
        log_path = self.exp.out / "logs" / f"search__trial{trial.number}.log"
        make_dirs(log_path.parent)
        stop = threading.Event()
        cut = False
        beat = threading.Thread(target=self._heartbeat, args=(trial._trial_id, stop), daemon=True)
        beat.start()
        t0 = time.time()
        try:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write("$ " + " ".join(argv) + "\n")
                fh.flush()
                from coco2yolo.kfold.plan import env_for
                from coco2yolo.kfold.runner import _die_with_parent

                proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,  # the URL by the environment:
                                        env={**env_for(self.exp), STORAGE_ENV: self.search.storage},  # never shown
                                        start_new_session=True, preexec_fn=_die_with_parent)
                left = self.left()
                timeout = None if left is None or entry.get("time") is not None else max(left, 60) + 60
                try:
                    rc = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:  # the search's budget is spent: the trial ends where it got
                    proc.terminate()
                    rc = proc.wait()
                    cut = True
                except BaseException:
                    proc.terminate()
                    proc.wait()
                    raise
        finally:
            stop.set()
        seconds = time.time() - t0
        side = _read_json(self.out_dir / "weights" / f"search_t{trial.number}.json")
        with self._lock:
            self.storage.set_trial_user_attr(trial._trial_id, "seconds", seconds)
            self.storage.set_trial_user_attr(trial._trial_id, "device", device)
            if side is not None and side.get("epochs_done") is not None:
                self.storage.set_trial_user_attr(trial._trial_id, "epochs", side["epochs_done"])
            reached = self.storage.get_trial(trial._trial_id).user_attrs.get("best_val_mAP50")
            if rc == 0 or cut:
                self._failed_in_a_row = 0
            if cut and reached is not None:
                self.study.tell(trial, reached)
                self._say(f"search: trial {trial.number} stopped by the search's budget: val mAP50 {reached:.4f}, "
                          f"{seconds:.0f} s")
            elif rc != 0 or side is None:
                self.study.tell(trial, state=TrialState.FAIL)
                self._say(f"search: trial {trial.number} failed (exit {rc}); see {log_path}")
                self._failed_in_a_row += 1
                if self._failed_in_a_row >= MAX_FAILED_IN_A_ROW:  # a broken entry, not bad luck: stop and say why
                    self.failure = (f"the recipe search stopped: {self._failed_in_a_row} trials in a row failed; the "
                                    f"last: {_last_line(log_path)} (see {log_path})")
                    self._stop.set()
                self.write_results()
                return not self._stop.is_set()
            elif (side.get("trial") or {}).get("pruned"):
                self.study.tell(trial, state=TrialState.PRUNED)
                self._say(f"search: trial {trial.number} pruned after {side.get('epochs_done')} epochs, {seconds:.0f} s")
            else:
                scores = [v for v in side.get("val_mAP50_by_epoch") or [] if v is not None]
                value = max(scores) if scores else 0.0
                self.study.tell(trial, value)
                self._say(f"search: trial {trial.number} complete: val mAP50 {value:.4f} after "
                          f"{side.get('epochs_done')} epochs, {seconds:.0f} s")
            self.write_results()
        return True

    def _worker(self, device: str) -> None:
        try:
            while self._one(device):
                pass
        except BaseException:
            self._stop.set()
            raise

    def run(self) -> dict[str, Any] | None:
        """Run trials until the search is done (one worker per device); return the best entry."""
        make_dirs(self.out_dir)
        left = self.left()
        self._say(f"search: study {self.search.study} in {masked(self.search.storage)}: {_finished(self.study)} of "
                  f"{self.search.trials} trials done" + (f", {left / 60:.0f} min of its budget left" if left is not None
                                                         else ""))
        errors: list[BaseException] = []

        def guarded(dev: str) -> None:
            try:
                self._worker(dev)
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                errors.append(err)

        threads = [threading.Thread(target=guarded, args=(d,), daemon=True) for d in self.devices]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except BaseException:
            self._stop.set()
            raise
        if errors:
            raise errors[0]
        if self.failure:
            raise UserError(self.failure)
        return self.write_results()

    def write_results(self) -> dict[str, Any] | None:
        """trials.csv and best.yaml from the study (every process writes the same, atomically)."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        keys = list(self.search.space)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["trial", *keys, "state", "epochs", "val_mAP50", "seconds", "device"])
        for t in trials:
            value = t.value if t.state == TrialState.COMPLETE else t.user_attrs.get("best_val_mAP50")
            w.writerow([t.number, *[t.params.get(k, "") for k in keys], t.state.name.lower(),
                        t.user_attrs.get("epochs", ""), "" if value is None else f"{value:.6f}",
                        f"{float(t.user_attrs.get('seconds', 0)):.1f}", t.user_attrs.get("device", "")])
        write_text(self.out_dir / "trials.csv", buf.getvalue())
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            return None
        best = max(complete, key=lambda t: (t.value, -t.number))
        entry = {"name": SEARCH_BEST, **self.search.base, **best.params}
        write_text(self.out_dir / "best.yaml",
                   f"# the best of {len(complete)} complete trials (trial {best.number}, validation mAP50 "
                   f"{best.value:.4f} on fold {self.search.fold}); written by the recipe search\n"
                   + yaml.safe_dump(entry, sort_keys=False))
        return entry


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _as_hours(value: Any) -> float:
    from coco2yolo import cli

    return cli.duration_hours(value)


def _replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out
