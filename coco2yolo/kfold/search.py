"""The recipe search: a race of Optuna trials against today's schedule, then a check on photos no trial saw.

**The race.** Each trial is the base entry with values drawn from the space by Optuna's sampler (TPE, seeded),
trained on fold ``fold``'s training images and validated on its validation images. The first trial is always
the **baseline**, the base entry as given (``role: baseline`` in ``trials.csv``), never pruned. The training
process reports every epoch's validation mAP50 to its trial against the seconds of training spent
(``train_yolo.py --trial``), so the pruner (Hyperband, successive halving, or none) compares trials at equal
cost and stops the poor ones early. With a ``budget``, every trial is given the same time R, chosen so that the
race tries at least :data:`MIN_TRIALS` settings and the check below fits (:func:`trial_seconds`), and the
pruner's rungs are R/9, R/3 and R (a base with ``epochs`` and no ``time`` keeps its epochs, each training bounded
all the same).

**The check.** A trial's validation mAP50 on one fold's few photos is one noisy number, and the best of many such
numbers is biased upwards (a recipe chosen that way lost 0.12 mAP50 to the plain schedule on other photos). So
the ``leaders`` best complete trials and the baseline are trained again, for R each, on ``confirm_folds`` other
folds, and predict those folds' validation photos; a leader replaces the baseline only when its mAP50 minus the
baseline's, paired over those photos, has a 95% bootstrap interval above 0. ``best.yaml`` holds the entry kept
(``search_best``) and, under ``search:``, ``beats_baseline``, the difference, its interval and what was kept.

The study lives in Optuna's RDB storage (SQLite by default; PostgreSQL lets several machines, e.g. a SLURM array,
work on one study; :mod:`coco2yolo.training.storage`); the check is a second study of the same storage
(``STUDY-check``), so processes share it the same way: every process asks the storage for its own trial, no
trial runs twice, and a killed search resumes where it stopped (a trial whose process died is failed and retried
once with the same values). Outputs: ``OUT/search/trials.csv`` (race), ``check.csv`` and ``best.yaml``.
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
MIN_TRIALS = 8      # the race tries at least this many settings within a budget
PRUNED_SHARE = 0.4  # a pruned trial's average cost, as a share of a whole trial (Hyperband, reduction 3)
OVERHEAD = 25       # seconds a trial costs beyond its training (start-up, final validation, prediction)
_HOST = socket.gethostname()


def trial_seconds(search: Search) -> float | None:
    """R, each trial's training time under a budget: the baseline, :data:`MIN_TRIALS` more trials (most of them
    pruned early) and the check's (leaders + 1) x confirm_folds trainings fit it. None without a budget."""
    if search.budget_hours is None:
        return None
    return race_seconds(search.budget_hours * 3600, search.leaders, search.confirm_folds)


def _units(leaders: int, confirm_folds: int) -> tuple[float, int]:
    """A search's cost in whole trials' training, and in trials started (each costing :data:`OVERHEAD`)."""
    return (1 + MIN_TRIALS * PRUNED_SHARE + (leaders + 1) * confirm_folds,
            1 + MIN_TRIALS + (leaders + 1) * confirm_folds)


def race_seconds(total: float, leaders: int = 2, confirm_folds: int = 1) -> float:
    """R for a search budget of ``total`` seconds (:func:`trial_seconds`)."""
    units, started = _units(leaders, confirm_folds)
    return max(30.0, (total - OVERHEAD * started) / units)


def budget_for(r: float, leaders: int = 2, confirm_folds: int = 1) -> float:
    """The search budget, in seconds, that gives each trial ``r`` seconds: :func:`race_seconds` inverted."""
    units, started = _units(leaders, confirm_folds)
    return r * units + OVERHEAD * started


def check_seconds(search: Search) -> float:
    """The part of the budget kept for the check."""
    r = trial_seconds(search) or 0.0
    return (search.leaders + 1) * search.confirm_folds * (r + OVERHEAD)


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

    r = trial_seconds(search)
    low = search.min_resource or (max(1, round(r / 9)) if r else 1)
    top = round(r) if r else "auto"
    pruner = {"hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=low, max_resource=top,
                                                                   reduction_factor=3),
              "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
                  min_resource=search.min_resource or (low if r else "auto"), reduction_factor=3),
              "none": optuna.pruners.NopPruner}[search.pruner]()
    return optuna.create_study(study_name=search.study, storage=storage, load_if_exists=True, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=5),
                               pruner=pruner)


def check_study_of(search: Search, storage: Any) -> Any:
    import optuna

    return optuna.create_study(study_name=f"{search.study}-check", storage=storage, load_if_exists=True,
                               direction="maximize", pruner=optuna.pruners.NopPruner())


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


def _is_baseline(t: Any) -> bool:
    return bool(t.user_attrs.get("baseline"))


class SearchRun:
    """One process's part of a search: a worker thread per device asks, trains, tells; then the check."""

    def __init__(self, exp: Experiment, devices: list[str], log: Any = None):
        assert exp.search is not None
        self.exp, self.search, self.devices = exp, exp.search, devices
        self.out_dir = exp.out / "search"
        self.data = exp.out / "data" / f"fold{self.search.fold}" / "data.yaml"
        self.log = log or sys.stdout
        self.R = trial_seconds(self.search)
        self.storage = storage_of(self.search)
        self.study = study_of(self.search, self.storage)
        self.check = check_study_of(self.search, self.storage)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._failed_in_a_row = 0
        self.failure: str | None = None

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.log, flush=True)

    # --- budget ---------------------------------------------------------------------------------------

    def left(self) -> float | None:
        """Seconds of the race's budget left (the check's share set aside)."""
        if self.search.budget_hours is None:
            return None
        return self.search.budget_hours * 3600 - check_seconds(self.search) - _spent(self.study)

    def race_done(self) -> bool:
        """Enough trials, or the race's budget spent; never before the baseline has run (or is running)."""
        from optuna.trial import TrialState

        states = {t.state for t in self.study.get_trials(deepcopy=False) if _is_baseline(t)}
        if not states & {TrialState.COMPLETE, TrialState.RUNNING}:
            # not yet run (or its retry waits): run it, even past the budget; failed with no retry left: stop at
            # once (no race without its baseline), run() says so in one line
            return bool(states) and states <= {TrialState.FAIL}
        left = self.left()
        return _finished(self.study) >= self.search.trials or (left is not None and left <= 30)

    def done(self) -> bool:
        """The whole search is done: its decision is in best.yaml."""
        path = self.out_dir / "best.yaml"
        if not path.exists():
            return False
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            return False
        return isinstance(doc, dict) and isinstance(doc.get("search"), dict) and "kept" in doc["search"]

    # --- the race -------------------------------------------------------------------------------------

    def baseline_entry(self) -> dict[str, Any]:
        """The base entry as given (trained like every trial: for R under a budget)."""
        return dict(self.search.base)

    def _enqueue_baseline(self) -> None:
        from optuna.trial import TrialState

        if not any(_is_baseline(t) for t in self.study.get_trials(deepcopy=False)
                   if t.state != TrialState.FAIL or t.user_attrs.get("retried")):
            self.study.enqueue_trial({}, user_attrs={"baseline": True})

    def timed(self, entry: dict[str, Any]) -> bool:
        """Whether a training of ``entry`` is given R: under a budget, unless the entry asks for epochs and no time."""
        return self.R is not None and (entry.get("time") is not None or entry.get("epochs") is None)

    def train_argv(self, entry: dict[str, Any], data: Path, name: str, device: str,
                   trial: int | None = None) -> list[str]:
        """A training's command: the entry's flags; a time-budgeted entry trained for R under a budget (an entry
        with epochs keeps them: R then only scales the pruner and the budget's share)."""
        entry = dict(entry)
        if self.timed(entry):
            entry["time"] = f"{self.R:.0f}s"
        args, _ = check_entry(entry, f"search {name}")  # its own flags, and --set for other Ultralytics keys
        argv = [*script_command("train"), "--data", str(data), *args, "--name", name, "--weights-dir",
                str(self.out_dir / "weights"), "--exist-ok", "--device", device, "--no-plan"]
        if trial is not None:
            argv += ["--trial", str(trial), "--study", self.search.study, "--storage", f"env:{STORAGE_ENV}"]
        return argv

    def _heartbeat(self, trial_id: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT):
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat only risks a retry
                pass

    def _run(self, argv: list[str], log_path: Path, trial_id: int, timeout: float | None) -> tuple[int, bool, float]:
        """Run a command with the trial's heartbeat; (exit status, cut by the budget, seconds)."""
        from coco2yolo.kfold.plan import env_for
        from coco2yolo.kfold.runner import _die_with_parent

        make_dirs(log_path.parent)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(trial_id, stop), daemon=True)
        beat.start()
        t0, cut = time.time(), False
        try:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write("$ " + " ".join(argv) + "\n")
                fh.flush()
                proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,  # the URL by the environment:
                                        env={**env_for(self.exp), STORAGE_ENV: self.search.storage},  # never shown
                                        start_new_session=True, preexec_fn=_die_with_parent)
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
        return rc, cut, time.time() - t0

    def _one(self, device: str) -> bool:
        """Run one race trial on ``device``; False when the race is done."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        with self._lock:
            fail_stale_trials(self.study)
            _fail_dead_local(self.study, self.storage)
            if self.race_done() or self._stop.is_set():
                return False
            trial = self.study.ask()
            baseline = _is_baseline(trial)
            params = {} if baseline else suggest(trial, self.search.space)
            self.storage.set_trial_user_attr(trial._trial_id, "owner", f"{_HOST}:{os.getpid()}")
            self.storage.record_heartbeat(trial._trial_id)
        entry = self.baseline_entry() if baseline else {**self.search.base, **params}
        argv = self.train_argv(entry, self.data, f"search_t{trial.number}", device, trial.number)
        shown = "the baseline (the base entry as given)" if baseline else " ".join(f"{k}={v}" for k, v in params.items())
        self._say(f"search: trial {trial.number} on {device}: {shown}")
        left = self.left()
        timeout = None if left is None or self.timed(entry) else max(left, 60) + 60
        rc, cut, seconds = self._run(argv, self.exp.out / "logs" / f"search__trial{trial.number}.log",
                                     trial._trial_id, timeout)
        side = _read_json(self.out_dir / "weights" / f"search_t{trial.number}.json")
        with self._lock:
            self.storage.set_trial_user_attr(trial._trial_id, "seconds", seconds)
            self.storage.set_trial_user_attr(trial._trial_id, "device", device)
            self.storage.set_trial_user_attr(trial._trial_id, "entry", entry)
            if side is not None and side.get("epochs_done") is not None:
                self.storage.set_trial_user_attr(trial._trial_id, "epochs", side["epochs_done"])
            reached = self.storage.get_trial(trial._trial_id).user_attrs.get("best_val_mAP50")
            if rc == 0 or cut:
                self._failed_in_a_row = 0
            log = self.exp.out / "logs" / f"search__trial{trial.number}.log"
            if cut and reached is not None:
                self.study.tell(trial, reached)
                self._say(f"search: trial {trial.number} stopped by the search's budget: val mAP50 {reached:.4f}, "
                          f"{seconds:.0f} s")
            elif rc != 0 or side is None:
                self.study.tell(trial, state=TrialState.FAIL)
                self._say(f"search: trial {trial.number} failed (exit {rc}); see {log}")
                self._failed_in_a_row += 1
                if self._failed_in_a_row >= MAX_FAILED_IN_A_ROW:  # a broken entry, not bad luck: stop and say why
                    self.failure = (f"the recipe search stopped: {self._failed_in_a_row} trials in a row failed; the "
                                    f"last: {_last_line(log)} (see {log})")
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
                self._say(f"search: trial {trial.number} complete{' (baseline)' if baseline else ''}: val mAP50 "
                          f"{value:.4f} after {side.get('epochs_done')} epochs, {seconds:.0f} s")
            self.write_results()
        return True

    # --- the check ------------------------------------------------------------------------------------

    def leaders(self) -> tuple[Any, list[Any]]:
        """The baseline's complete trial and the best complete trials (at most ``leaders``)."""
        from optuna.trial import TrialState

        complete = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        base = next((t for t in complete if _is_baseline(t)), None)
        others = sorted((t for t in complete if not _is_baseline(t)), key=lambda t: (-t.value, t.number))
        return base, others[: self.search.leaders]

    def check_folds(self) -> list[int]:
        K = self.exp.folds
        return [(self.search.fold + 1 + k) % K for k in range(self.search.confirm_folds)]

    def _enqueue_checks(self) -> None:
        base, leaders = self.leaders()
        if base is None or not leaders:  # nothing to compare the baseline with: no check
            return
        have = {t.user_attrs.get("key") for t in self.check.get_trials(deepcopy=False)}
        for t in [base, *leaders]:
            for f in self.check_folds():
                key = f"t{t.number}@fold{f}"
                if key not in have:
                    self.check.enqueue_trial({}, user_attrs={"key": key, "race_trial": t.number, "fold": f,
                                                             "baseline": _is_baseline(t)})

    def _check_one(self, device: str) -> bool:
        """Run one check training (an entry retrained on another fold, its validation photos predicted)."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        with self._lock:
            fail_stale_trials(self.check)
            _fail_dead_local(self.check, self.storage)
            waiting = self.check.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting or self._stop.is_set():
                return False
            trial = self.check.ask()
            key = trial.user_attrs.get("key")
            if key is None:  # an ask() with nothing enqueued left (another process took the last one)
                self.check.tell(trial, state=TrialState.FAIL)
                return False
            self.storage.set_trial_user_attr(trial._trial_id, "owner", f"{_HOST}:{os.getpid()}")
            self.storage.record_heartbeat(trial._trial_id)
        race = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.user_attrs["race_trial"])
        entry = race.user_attrs.get("entry") or (self.baseline_entry() if _is_baseline(race)
                                                 else {**self.search.base, **race.params})
        fold = trial.user_attrs["fold"]
        name = f"check_t{race.number}_fold{fold}"
        data = self.exp.out / "data" / f"fold{fold}"
        self._say(f"search: check {key} on {device}: trial {race.number}"
                  f"{' (baseline)' if _is_baseline(race) else ''} retrained on fold {fold}")
        log = self.exp.out / "logs" / f"search__{name}.log"
        # an entry with epochs (no time) under a budget: bounded all the same, by twice what the budget sets aside
        bound = None if self.R is None or self.timed(entry) else 2 * (self.R + OVERHEAD)
        rc, cut, seconds = self._run(self.train_argv(entry, data / "data.yaml", name, device), log, trial._trial_id,
                                     bound)
        preds = self.out_dir / "check" / f"{name}_val.json"
        if rc == 0:
            make_dirs(preds.parent)
            rc2, _, s2 = self._run([*script_command("predict"), "--weights", str(self.out_dir / "weights" / f"{name}.pt"),
                                    "--images", str(data / "val.json"), "--out", str(preds), "--device", device],
                                   log, trial._trial_id, None)
            rc, seconds = rc2, seconds + s2
        with self._lock:
            self.storage.set_trial_user_attr(trial._trial_id, "seconds", seconds)
            if rc != 0:
                self.check.tell(trial, state=TrialState.FAIL)
                self.failure = (f"the search's check {key} took more than {bound:.0f} s, twice what the budget keeps "
                                "for it: give the base a time: rather than epochs:, or a larger budget" if cut else
                                f"the search's check {key} failed (exit {rc}): {_last_line(log)} (see {log})")
                self._stop.set()
                return False
            self.storage.set_trial_user_attr(trial._trial_id, "preds", str(preds))
            self.check.tell(trial, 0.0)
            self._say(f"search: check {key} done in {seconds:.0f} s")
        return True

    def decide(self) -> dict[str, Any] | None:
        """best.yaml from the race and the check (module docstring), once every check training is done."""
        from optuna.trial import TrialState

        base, leaders = self.leaders()
        if base is None:
            return None
        checks = {t.user_attrs["key"]: t for t in self.check.get_trials(deepcopy=False)
                  if t.state == TrialState.COMPLETE and t.user_attrs.get("key")}
        folds = self.check_folds()
        wanted = [f"t{t.number}@fold{f}" for t in [base, *leaders] for f in folds] if leaders else []
        if any(k not in checks for k in wanted):
            return None
        if not leaders:
            decision = {"beats_baseline": False, "kept": "baseline", "difference": None, "ci95": None,
                        "baseline_trial": base.number, "check_images": 0, "check_folds": [], "leaders": [],
                        "trial_seconds": round(self.R) if self.R else None,
                        "note": "no trial besides the baseline completed in the budget"}
            doc = {"name": SEARCH_BEST, **(base.user_attrs.get("entry") or self.baseline_entry()), "search": decision}
            write_text(self.out_dir / "best.yaml", "# the recipe search's choice: the baseline (no other trial completed)\n"
                       + yaml.safe_dump(_plain(doc), sort_keys=False))
            return doc
        gts = [self.exp.out / "data" / f"fold{f}" / "val.json" for f in folds]
        preds = {t.number: [Path(checks[f"t{t.number}@fold{f}"].user_attrs["preds"]) for f in folds]
                 for t in [base, *leaders]}
        scored = paired_scores(gts, preds, self.out_dir / "check")
        b = scored[base.number]
        rows, winner = [], None
        for t in leaders:
            s = scored[t.number]
            diff = s["boot"] - b["boot"]
            from coco2yolo.evaluation.metrics import interval

            lo, hi = interval(diff)
            row = {"trial": t.number, "params": dict(t.params), "race_val_mAP50": round(t.value, 6),
                   "check_mAP50": round(s["mAP50"], 6), "difference": round(s["mAP50"] - b["mAP50"], 6),
                   "ci95": [round(lo, 6), round(hi, 6)], "beats_baseline": bool(lo > 0)}
            rows.append(row)
            if row["beats_baseline"] and (winner is None or row["difference"] > winner["difference"]):
                winner = row
        kept = next(t for t in leaders if t.number == winner["trial"]) if winner else base
        entry = kept.user_attrs.get("entry") or ({**self.search.base, **kept.params} if winner else self.baseline_entry())
        best = max(rows, key=lambda r: r["difference"]) if rows else None
        decision = {"beats_baseline": winner is not None,
                    "kept": f"trial {kept.number}" if winner else "baseline",
                    "difference": (winner or best or {}).get("difference"),
                    "ci95": (winner or best or {}).get("ci95"),
                    "baseline_check_mAP50": round(b["mAP50"], 6), "baseline_trial": base.number,
                    "check_images": b["images"], "check_folds": folds, "leaders": rows,
                    "trial_seconds": round(self.R) if self.R else None}
        doc = {"name": SEARCH_BEST, **entry, "search": decision}
        verdict = (f"trial {kept.number} beats the baseline by {winner['difference']:+.4f} {winner['ci95']}" if winner else
                   "no trial beats the baseline beyond noise, so the baseline is kept" +
                   (f" (best: {best['difference']:+.4f} {best['ci95']})" if best else ""))
        write_text(self.out_dir / "best.yaml",
                   f"# the recipe search's choice: {verdict}, mAP50 paired over the {b['images']} validation photos of "
                   f"fold(s) {', '.join(map(str, folds))}, which no race trial saw; written by the recipe search\n"
                   + yaml.safe_dump(_plain(doc), sort_keys=False))
        self._write_check_csv(rows, b, base)
        return doc

    def _write_check_csv(self, rows: list[dict[str, Any]], b: dict[str, Any], base: Any) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["trial", "role", "params", "race_val_mAP50", "check_mAP50", "difference", "ci95_low", "ci95_high",
                    "beats_baseline"])
        w.writerow([base.number, "baseline", "", f"{base.value:.6f}", f"{b['mAP50']:.6f}", "", "", "", ""])
        for r in rows:
            w.writerow([r["trial"], "leader", json.dumps(r["params"]), f"{r['race_val_mAP50']:.6f}",
                        f"{r['check_mAP50']:.6f}", f"{r['difference']:+.6f}", f"{r['ci95'][0]:.6f}",
                        f"{r['ci95'][1]:.6f}", r["beats_baseline"]])
        write_text(self.out_dir / "check.csv", buf.getvalue())

    # --- running ----------------------------------------------------------------------------------------

    def _workers(self, work: Any) -> None:
        errors: list[BaseException] = []

        def guarded(dev: str) -> None:
            try:
                while work(dev):
                    pass
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                self._stop.set()
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

    def _wait_for_race(self) -> None:
        """Until no race trial of any process is still running (a dead one is failed by its heartbeat)."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        while self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            fail_stale_trials(self.study)
            _fail_dead_local(self.study, self.storage)
            time.sleep(2)

    def run(self) -> dict[str, Any] | None:
        """The race, then the check, then the decision (best.yaml); returns best.yaml's document."""
        make_dirs(self.out_dir)
        left = self.left()
        self._say(f"search: study {self.search.study} in {masked(self.search.storage)}: {_finished(self.study)} of "
                  f"{self.search.trials} trials done" + (f", {max(left, 0) / 60:.1f} min of the race's budget left, each "
                                                         f"trial {self.R / 60:.1f} min" if left is not None and self.R
                                                         else ""))
        self._enqueue_baseline()
        self._workers(self._one)
        self.write_results()
        self._wait_for_race()
        base, leaders = self.leaders()
        if base is None:
            from optuna.trial import TrialState

            failed = [t.number for t in self.study.get_trials(deepcopy=False)
                      if _is_baseline(t) and t.state == TrialState.FAIL]
            why = _last_line(self.exp.out / "logs" / f"search__trial{failed[-1]}.log") if failed else ""
            raise UserError(f"the recipe search's baseline (the base entry as given) did not complete"
                            f"{': ' + why if why else ''}; see {self.out_dir / 'trials.csv'} and {self.exp.out / 'logs'}")
        if not leaders:
            self._say("search: no trial besides the baseline completed: the baseline is kept")
        else:
            self._say(f"search: the check: trials {', '.join(str(t.number) for t in leaders)} and the baseline "
                      f"retrained on fold(s) {', '.join(map(str, self.check_folds()))}")
        self._enqueue_checks()
        self._workers(self._check_one)
        while (doc := self.decide()) is None:  # another process still runs a check training
            from optuna.trial import TrialState

            if not self.check.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                self._enqueue_checks()  # one failed and was retried, or never enqueued
                self._workers(self._check_one)
            time.sleep(2)
        return doc

    def write_results(self) -> None:
        """trials.csv from the study (every process writes the same, atomically)."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        keys = list(self.search.space)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["trial", "role", *keys, "state", "epochs", "val_mAP50", "seconds", "device"])
        for t in trials:
            value = t.value if t.state == TrialState.COMPLETE else t.user_attrs.get("best_val_mAP50")
            base = _is_baseline(t)
            w.writerow([t.number, "baseline" if base else "trial",
                        *[t.params.get(k, self.search.base.get(k, "") if base else "") for k in keys],
                        t.state.name.lower(), t.user_attrs.get("epochs", ""), "" if value is None else f"{value:.6f}",
                        f"{float(t.user_attrs.get('seconds', 0)):.1f}", t.user_attrs.get("device", "")])
        write_text(self.out_dir / "trials.csv", buf.getvalue())


def paired_scores(gts: list[Path], preds: dict[Any, list[Path]], work: Path, n_boot: int = 1000) -> dict[Any, dict]:
    """mAP50 of each entry's predictions over the photos of ``gts`` together (disjoint folds), with bootstrap
    samples drawn over the same photos for every entry (so differences are paired)."""
    from coco2yolo.cocodata import CategoryMap, load_dataset
    from coco2yolo.evaluation.metrics import bootstrap_map50, bootstrap_weights, prepare_gt, score
    from coco2yolo.results import load_results

    docs = [load_dataset(g) for g in gts]
    data = {**docs[0], "images": [im for d in docs for im in d["images"]],
            "annotations": [a for d in docs for a in d["annotations"]]}
    cmap = CategoryMap(data["categories"])
    gt = prepare_gt(data)
    ids = {im["id"] for im in data["images"]}
    weights = bootstrap_weights(len(ids), n_boot, seed=0)
    out = {}
    for key, files in preds.items():
        dets = load_results(files[0], ids, set(cmap.ids), data["images"])
        for f in files[1:]:
            dets = dets.concat(load_results(f, ids, set(cmap.ids), data["images"]))
        s = score(gt, dets, cmap)
        out[key] = {"mAP50": s.map50, "boot": bootstrap_map50(s.matches, weights), "images": len(ids)}
    return out


def _plain(obj: Any) -> Any:
    """YAML-safe: tuples as lists, numpy numbers as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


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
