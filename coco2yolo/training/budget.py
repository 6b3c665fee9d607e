"""Training to a time budget, and reporting each epoch to a recipe search.

Ultralytics' ``time`` counts from the start of its training loop: the model build, the dataset scan and
the final validation of ``best.pt`` come on top. :class:`Budget` makes ``--time`` cover the whole command:
after every epoch it sets Ultralytics' ``time`` to what is left of the budget less a reserve for the final
validation (the last validation's measured time, plus 20%), and Ultralytics then re-fits the epochs, the
learning-rate schedule and ``close_mosaic`` to it and stops when it is spent.

:class:`TrialReporter` reports each epoch's validation mAP50 to an Optuna trial (against the seconds of
training so far, so that trials of different speeds are compared at equal cost) and stops the run when
the pruner says so.
"""

from __future__ import annotations

import time
from typing import Any


def quiet_optuna() -> None:
    """Optuna marks its heartbeat API experimental and warns on every use; its log says each trial's value."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class Budget:
    """Keeps a run within ``hours`` counted from ``start`` (the command's start)."""

    def __init__(self, hours: float, start: float):
        self.seconds, self.start = hours * 3600, start
        self.val_seconds = 0.0
        self._val_start: float | None = None

    def attach(self, yolo: Any) -> None:
        yolo.add_callback("on_train_start", self._fit)
        yolo.add_callback("on_fit_epoch_end", self._fit)
        yolo.add_callback("on_val_start", self._val_start_at)
        yolo.add_callback("on_val_end", self._val_end_at)

    def _val_start_at(self, _validator: Any) -> None:
        self._val_start = time.time()

    def _val_end_at(self, _validator: Any) -> None:
        if self._val_start is not None:
            self.val_seconds = time.time() - self._val_start

    def left(self) -> float:
        """Seconds of the budget left for training, the final validation's reserve set aside."""
        return self.seconds - (time.time() - self.start) - (1.2 * self.val_seconds + 2.0)

    def _fit(self, trainer: Any) -> None:
        in_loop = time.time() - getattr(trainer, "train_time_start", time.time())
        trainer.args.time = max(in_loop + self.left(), 1.0) / 3600


class TrialReporter:
    """Reports validation mAP50 per epoch to an Optuna trial; stops the run when it is pruned."""

    def __init__(self, storage: str, study: str, number: int):
        import optuna

        from coco2yolo.errors import UserError
        from coco2yolo.training.storage import masked, open_storage

        quiet_optuna()
        try:
            self.study = optuna.load_study(study_name=study, storage=open_storage(storage))
        except KeyError:
            raise UserError(f"--study {study}: no such study in {masked(storage)}") from None
        trial_id = next((t._trial_id for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
        if trial_id is None:
            raise UserError(f"--trial {number}: no such trial in study {study!r} of {masked(storage)}")
        self.trial = optuna.Trial(self.study, trial_id)
        self.baseline = bool(self.study._storage.get_trial(trial_id).user_attrs.get("baseline"))  # never pruned
        self.pruned = False
        self.best = float("-inf")
        self._last_epoch = -1

    def attach(self, yolo: Any) -> None:
        yolo.add_callback("on_fit_epoch_end", self._report)

    def _report(self, trainer: Any) -> None:
        value = (getattr(trainer, "metrics", None) or {}).get("metrics/mAP50(B)")
        if value is None or trainer.epoch <= self._last_epoch:  # once an epoch (not again at the final validation)
            return
        self._last_epoch = trainer.epoch
        step = max(1, int(time.time() - trainer.train_time_start))  # seconds of training: the resource spent
        self.best = max(self.best, float(value))
        self.trial.report(float(value), step)
        self.trial.set_user_attr("epochs", int(trainer.epoch) + 1)
        self.trial.set_user_attr("best_val_mAP50", self.best)
        if not self.baseline and self.trial.should_prune():
            self.pruned = True
            self.trial.set_user_attr("pruned_at_seconds", step)
            trainer.stop = True
