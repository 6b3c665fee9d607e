"""How long each job of an experiment will take, from measured throughput; fitting a plan to a budget.

- **Probe**: for each (model, image size, batch, device) a few training steps on random images of that size
  (forward, loss, backward, optimizer step; AMP on CUDA), after one warm-up step: seconds per training image.
  Cached in ``OUT/.kfold/probes.json`` (a probe of a large model at 1024 px on a CPU takes minutes; on a GPU
  seconds).
- **Measured**: once a training job of the same settings has finished, its sidecar's seconds per epoch
  replace the probe (they include data loading, augmentation and validation, which the probe does not).
- A training job takes its ``--time`` budget if it has one, else ``epochs`` x (training images x seconds per
  image, plus validation images at a third of that); a prediction job its images at a third; the rest a few
  seconds each.

:func:`fit` checks the plan against the experiment's ``budget`` (refused in one line that says by how much)
and shares what is left among the ``time: auto`` models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coco2yolo import cli
from coco2yolo.errors import UserError
from coco2yolo.fileio import load_json, write_json
from coco2yolo.kfold.experiment import Experiment
from coco2yolo.kfold.plan import Job, time_of

VAL_SHARE = 1 / 3          # a validation or prediction image costs about a third of a training image
STARTUP = 20.0             # seconds to start a training command (imports, model build, dataset scan)


@dataclass
class Estimate:
    seconds: float
    source: str            # "budget", "measured", "probe", "fixed"


def _flag(args: list[str], flag: str, default: Any) -> Any:
    return args[args.index(flag) + 1] if flag in args else default


def settings_of(args: list[str]) -> dict[str, Any]:
    """The settings a training's speed depends on, from its train_yolo.py flags and the defaults."""
    from coco2yolo.training import config

    d = config.defaults()
    freeze = next((int(a.split("=", 1)[1]) for a in args if a.startswith("freeze=") and a.split("=", 1)[1].isdigit()),
                  0)
    return {"model": str(_flag(args, "--model", d["model"])), "weights": _flag(args, "--weights", None),
            "imgsz": int(_flag(args, "--imgsz", d["imgsz"])), "batch": int(float(_flag(args, "--batch", d["batch"]))),
            "epochs": int(_flag(args, "--epochs", d["epochs"])), "freeze": freeze}


def probe(model: str, weights: str | None, imgsz: int, batch: int, device: str, freeze: int = 0) -> float:
    """Seconds per training image (:func:`coco2yolo.training.plan.probe`)."""
    from coco2yolo.training.plan import probe as measure

    return measure(model, weights, imgsz, batch, device, freeze)


class Estimator:
    """Job estimates for one experiment (probes cached in OUT/.kfold/probes.json)."""

    def __init__(self, exp: Experiment, device: str, out: Any = None):
        self.exp, self.device, self.out = exp, device, out
        self.cache_file = exp.out / ".kfold" / "probes.json"
        try:
            self.cache = load_json(self.cache_file, "probe cache") if self.cache_file.exists() else {}
        except UserError:
            self.cache = {}
        self.n_images = self._count_images()
        self._stats: tuple[int | None, tuple[float, ...]] | None = None

    def photo_stats(self) -> tuple[int | None, tuple[float, ...]]:
        """The longest side of the experiment's training photos and their boxes' relative areas (from its JSON), for
        the plan's sizes (:class:`coco2yolo.training.plan.Counts`)."""
        from coco2yolo.training.plan import box_areas, longest_side

        if self._stats is None:
            if self.exp.train is None or not self.exp.train.is_file():
                self._stats = (None, ())
            else:
                doc = load_json(self.exp.train, "COCO file")
                self._stats = (longest_side(doc), box_areas(doc))
        return self._stats

    def _count_images(self) -> tuple[int, int]:
        """(training images, test images) of the experiment."""
        def count(path: Path | None) -> int:
            if path is None or not path.is_file():
                return 0
            doc = load_json(path, "COCO file")
            return len(doc.get("images") or []) if isinstance(doc, dict) else 0

        return count(self.exp.train), count(self.exp.test)

    def _key(self, s: dict[str, Any]) -> str:
        import torch

        name = "cpu"
        if self.device != "cpu" and torch.cuda.is_available():
            name = torch.cuda.get_device_name(int(self.device.split(",")[0]))
        frozen = f"|freeze {s['freeze']}" if s.get("freeze") else ""
        return f"{s['weights'] or s['model']}|{s['imgsz']}|{s['batch']}{frozen}|{name}|torch {torch.__version__}"

    def per_image(self, args: list[str]) -> tuple[float, str]:
        """Seconds per training image for a training job's flags: measured if a job with these settings
        finished, else probed (cached)."""
        s = settings_of(args)
        key = self._key(s)
        measured = self.cache.get("measured", {}).get(key)
        if measured:
            return float(measured), "measured"
        probed = self.cache.get("probes", {}).get(key)
        if probed is None:
            if self.out is not None:
                print(f"probing the throughput of {s['weights'] or s['model']} at {s['imgsz']} px on {self.device} ...",
                      file=self.out, flush=True)
            try:
                probed = probe(s["model"], s["weights"], s["imgsz"], s["batch"], self.device, s.get("freeze") or 0)
            except Exception as err:  # noqa: BLE001 - a model the probe cannot build: no estimate, not a crash
                if self.out is not None:
                    print(f"cannot probe {s['weights'] or s['model']} ({' '.join(str(err).split())[:120]}): "
                          "its jobs are estimated at 0 s", file=self.out, flush=True)
                return 0.0, "unknown"
            self.cache.setdefault("probes", {})[key] = probed
            write_json(self.cache_file, self.cache, indent=2)
        return float(probed) * 1.15, "probe"  # data loading and augmentation: +15% (replaced once measured)

    def measure(self, args: list[str]) -> Any:
        """``measure(imgsz, batch, freeze)`` for a plan: seconds per training image of a training's flags at those
        settings, probed once and cached with the experiment's other probes (no data-loading margin: the plan's
        rule has its own)."""
        def at(imgsz: int, batch: int, freeze: int) -> float:
            trial = [*args, "--imgsz", str(imgsz), "--batch", str(batch)] + (["--set", f"freeze={freeze}"] if freeze else [])
            per_image, source = self.per_image(trial)
            return per_image / 1.15 if source == "probe" else per_image
        return at

    def learn(self, args: list[str], sidecar: dict[str, Any], n_train: int, n_val: int) -> None:
        """Record a finished training's measured seconds per image (for the next estimates)."""
        import math

        per_epoch = sidecar.get("seconds_per_epoch") if isinstance(sidecar, dict) else None
        if (isinstance(per_epoch, bool) or not isinstance(per_epoch, (int, float)) or not math.isfinite(per_epoch)
                or per_epoch <= 0 or n_train <= 0):  # a sidecar read back is data too: only a plain time counts
            return
        s = settings_of(args)
        per_image = per_epoch / (n_train + VAL_SHARE * n_val)
        self.cache.setdefault("measured", {})[self._key(s)] = per_image
        write_json(self.cache_file, self.cache, indent=2)

    def job(self, job: Job) -> Estimate:
        n, n_test = self.n_images
        K = self.exp.folds
        if job.step == "train" and job.argv is not None:
            budget = time_of(job.argv)
            if budget is not None:
                return Estimate(budget * 3600 + STARTUP, "budget")
            c, source = self.per_image(job.argv)
            refit = job.id.endswith("/all")
            n_train = n if refit else n * (K - 1) / K
            n_val = 0 if refit else n / K
            epochs = settings_of(job.argv)["epochs"]
            return Estimate(epochs * c * (n_train + VAL_SHARE * n_val) + (c * VAL_SHARE * n if refit else 0)
                            + STARTUP, source)
        if job.step == "predict" and job.argv is not None:
            train_job = job.deps[0] if job.deps else None
            images = n_test if job.id.endswith("/test") else n / K
            c = 0.0
            if train_job is not None:
                argv = self._train_argv.get(train_job)
                if argv is not None:
                    c = self.per_image(argv)[0]
            return Estimate(images * c * VAL_SHARE + 10.0, "probe")
        return Estimate(10.0 if job.argv is not None else 2.0, "fixed")

    def all(self, jobs: list[Job]) -> dict[str, Estimate]:
        self._train_argv = {j.id: j.argv for j in jobs if j.step == "train" and j.argv is not None}
        return {j.id: self.job(j) for j in jobs}


def fit(exp: Experiment, build: Any, estimator: Estimator) -> tuple[list[Job], dict[str, Estimate], dict[str, float]]:
    """The plan, each job's estimate, and the ``time: auto`` models' fold budgets (hours), fitted to the
    experiment's budget: UserError saying by how much when the plan cannot fit."""
    auto = [m for m in exp.models if m.auto_time]
    search_s = (exp.search.budget_hours or 0) * 3600 if exp.search is not None else 0.0
    if exp.budget_hours is None:
        jobs = build({})
        return jobs, estimator.all(jobs), {}
    budget_s = exp.budget_hours * 3600
    # every auto model's fold jobs at a nominal minute: what the fixed part of the plan costs
    nominal = {m.name: 1 / 60 for m in auto}
    jobs = build(nominal)
    est = estimator.all(jobs)
    auto_names = {m.name for m in auto}

    def is_auto_train(j: Job) -> bool:
        return j.step == "train" and j.id.split("/")[1] in auto_names

    fixed = sum(e.seconds for jid, e in est.items() if not is_auto_train(next(j for j in jobs if j.id == jid)))
    K = exp.folds
    units = K + (K / (K - 1) if exp.test is not None and exp.final in ("refit", "both") else 0)
    left = budget_s - fixed - search_s - len(auto) * units * STARTUP
    need = fixed + search_s
    if not auto:
        if need > budget_s:
            raise UserError(f"{exp.path}: the plan needs {cli.format_hours(need / 3600)} of device time, "
                            f"{cli.format_hours((need - budget_s) / 3600)} more than its budget of "
                            f"{cli.format_hours(exp.budget_hours)} (dry-run shows each job; lower epochs or imgsz, drop "
                            "a model or fold, or raise the budget)")
        return jobs, est, {}
    per_fold = left / (len(auto) * units)
    if per_fold < 60:
        raise UserError(f"{exp.path}: the fixed part of the plan needs {cli.format_hours(need / 3600)} of its "
                        f"{cli.format_hours(exp.budget_hours)} budget, leaving {cli.format_hours(max(left, 0) / 3600)} "
                        f"for the time: auto models ({len(auto)} x {units:g} trainings); raise the budget by at least "
                        f"{cli.format_hours((60 * len(auto) * units - left) / 3600)}")
    times = {m.name: per_fold / 3600 for m in auto}
    jobs = build(times)
    return jobs, estimator.all(jobs), times


def plan_models(exp: Experiment, times: dict[str, float], estimator: Estimator, out: Any = None) -> dict[str, Any]:
    """Each model entry with a time budget (``time:`` or ``time: auto``) and settings left open gets the plan a timed
    train_yolo.py makes (:mod:`coco2yolo.training.plan`), made once for all its jobs (folds and refit train the same
    recipe) with a fold's image counts and the experiment's cached probes; its choice goes into the entry's flags
    with ``--no-plan``. Returns each planned entry's plan record."""
    import time as _time

    from coco2yolo.training.plan import Counts, make_plan, open_settings

    planned: dict[str, Any] = {}
    n, _ = estimator.n_images
    K = exp.folds
    for m in exp.models:
        hours = times.get(m.name) or time_of(m.train_args)
        if hours is None or "--no-plan" in m.train_args:
            continue
        s = settings_of(m.train_args)
        given = set(m.options) | ({"freeze"} if s["freeze"] else set())
        settings = {**s, "val": "--no-val" not in m.train_args}
        if not open_settings(settings, given):
            continue
        plan = make_plan(settings, given, Counts(round(n * (K - 1) / K), round(n / K), *estimator.photo_stats()), hours,
                         _time.time(), estimator.device, measure=estimator.measure(m.train_args))
        plan.probe_seconds = 0.0  # probed before the run: not part of any job's budget
        if out is not None:
            print(f"[plan] {m.name}: " + plan.block().replace("\n", "\n    "), file=out, flush=True)
        if plan.chosen is not None:
            extra = ["--imgsz", str(plan.chosen.imgsz), "--batch", str(plan.chosen.batch)]
            if plan.chosen.freeze:
                extra += ["--set", f"freeze={plan.chosen.freeze}"]
            m.train_args = [*m.train_args, *extra, "--no-plan"]
        planned[m.name] = plan.record()
    return planned


def describe(est: Estimate) -> str:
    return f"~{cli.format_hours(est.seconds / 3600)} ({est.source})"


def total(est: dict[str, Estimate], jobs: list[Job]) -> float:
    return sum(e.seconds for e in est.values())

