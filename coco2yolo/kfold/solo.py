"""``train_yolo.py``: one training, or with ``--search`` one budget for a recipe search and the final model.

    train_yolo.py --data DIR/data.yaml --time 1h --search [any train_yolo.py flags]

``--search`` divides the ``--time`` budget (:data:`SEARCH_SHARE`: a third to the search, the rest to the final
model, measured from the command's start) and says how. The search is the k-fold experiment's
(:mod:`coco2yolo.kfold.search`) on three folds made from the dataset's own photos (its training and validation
images together, converted again with the same category map): its baseline is what plain ``--time`` would train
(the plan's choice for the final model's budget, :mod:`coco2yolo.training.plan`), raced against trials over
:func:`default_space` on fold 0, the leaders checked against it on fold 1. The final model is then trained on
the user's own split for what is left of the budget, with the recipe the search kept (the baseline unless a trial
beat it beyond noise). Its sidecar records the division and the search's decision (``search``).

A search whose trials are too short to rank recipes is not run (:func:`trial_reach`): when the search's share buys
each trial fewer epochs at the baseline's settings than a run needs (the plan's rule, ``cfg/epochs_needed.yaml``;
``--search-min-epochs``), the whole budget trains the plan's choice, as plain ``--time``, and the command says
from what budget a search would run. Measured (BENCHMARKS.md): on a CPU at 60 minutes, trials of 3 to 5 epochs
chose a frozen backbone, +0.100 mAP50 beyond noise at that length, whose final model then ended -0.021 [-0.048,
+0.009] against plain ``--time 1h`` on held-out photos.
Without ``--search`` this is :mod:`coco2yolo.training.train`, unchanged.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from coco2yolo import cli
from coco2yolo.errors import UserError

from coco2yolo.kfold.experiment import SEARCH_SHARE, default_space

FOLDS = 3                # the search's folds of the dataset's photos: fold 0 races, fold 1 checks
NOT_IN_ENTRY = {"data", "name", "weights_dir", "exist_ok", "resume", "config", "time", "device", "plan", "set"}


def get_args_parser() -> argparse.ArgumentParser:
    from coco2yolo.training import train

    p = train.get_args_parser()
    p.add_argument("--search", action="store_true",
                   help="with --time: spend a third of the budget on a recipe search (the plan's choice raced against "
                        "trials of image size, lr0, mosaic and freeze, the leaders checked on photos no trial saw) and "
                        "the rest on the final model, trained with the search's recipe only if it beat the plan's "
                        "beyond noise")
    p.add_argument("--search-min-epochs", type=cli.POSITIVE_INT, default=None, metavar="N",
                   help="with --search: search only when each trial reaches N epochs at the baseline's settings (default: "
                        "the epochs a run needs, cfg/epochs_needed.yaml); below that, the whole budget trains the plan's "
                        "choice, as plain --time")
    return p


def trial_reach(plan: Any, search_s: float, min_epochs: int) -> tuple[float, float]:
    """The epochs each race trial reaches at the baseline's settings (the plan's choice, its measured seconds an
    epoch scaled to a fold's photos: (FOLDS - 1) / FOLDS of them to train, the rest to validate) with ``search_s``
    seconds of search, and the ``--time`` budget at which it would reach ``min_epochs``."""
    from coco2yolo.kfold.search import budget_for, race_seconds
    from coco2yolo.training.plan import VAL_SHARE

    c = plan.chosen
    if c is None or not c.seconds_per_epoch:
        return 0.0, float("inf")
    n = plan.train_images + plan.val_images
    per_image = c.seconds_per_epoch / max(1.0, plan.train_images + VAL_SHARE * plan.val_images)
    fold_epoch = per_image * (n * (FOLDS - 1) / FOLDS + VAL_SHARE * n / FOLDS)
    return race_seconds(search_s) / fold_epoch, budget_for(min_epochs * fold_epoch) / SEARCH_SHARE


def _merged_photos(data_yaml: Path, work: Path) -> Path:
    """The dataset's training and validation images together (its train.json and val.json, written by the
    converter), as one COCO file in ``work`` whose file names point at the dataset's photos."""
    from coco2yolo.fileio import load_json, write_json

    parts = []
    for name in ("train.json", "val.json"):
        f = data_yaml.parent / name
        if not f.is_file():
            raise UserError(f"--search needs the dataset's {name} beside {data_yaml} (python -m coco2yolo writes it): "
                            "the search makes its own folds of the photos")
        parts.append(load_json(f, "COCO dataset"))
    images, anns = [], []
    for doc in parts:
        for im in doc["images"]:
            rel = os.path.relpath((data_yaml.parent / im["file_name"]).absolute(), work.absolute())
            images.append({**im, "file_name": rel})
        anns += doc.get("annotations", [])
    out = work / "photos.json"
    write_json(out, {**parts[0], "images": images, "annotations": anns})
    return out


def _entry(cfg: dict[str, Any], given: set[str], chosen: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The user's training as a model entry (the keys they gave), with the plan's choice."""
    entry = {k: cfg[k] for k in sorted(given) if k in cfg and k not in NOT_IN_ENTRY}
    entry.update({k: v for k, v in extra.items()})
    entry.update(chosen)
    return entry


def search_then_train(args: argparse.Namespace) -> int:
    from coco2yolo import ultra
    from coco2yolo.training import config, train
    from coco2yolo.training.plan import chosen_settings, dataset_counts, make_plan

    started = time.time()
    ultra.setup()
    cfg = config.resolve(args)
    given = config.given_keys(args)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    reserved = {k for k in cfg if config.is_ultralytics_key(k)} | set(config.MANAGED)
    extra = config.parse_set(args.set, set(DEFAULT_CFG_DICT) - reserved, reserved)
    if not cfg.get("time"):
        raise UserError("--search needs --time: the budget it divides between the search and the final model")
    if args.trial is not None or cfg["resume"]:
        raise UserError("--search cannot be combined with --trial or --resume")
    budget = cfg["time"] * 3600
    search_s = budget * SEARCH_SHARE
    data_yaml, data, _, _ = train.check_data(cfg["data"])
    name = cfg["name"] or train.default_name(data_yaml, cfg["model"], cfg["weights"])
    train.check_name(name)
    work = ultra.runs_dir() / "search" / name
    work.mkdir(parents=True, exist_ok=True)
    # the baseline: what plain --time would train for the final model's share
    settings = {"model": cfg["model"], "weights": cfg["weights"], "imgsz": cfg["imgsz"], "batch": cfg["batch"],
                "freeze": extra.get("freeze"), "val": cfg["val"]}
    device = str(cfg["device"] or "")
    plan = make_plan(settings, given, dataset_counts(data_yaml, data), (budget - search_s) / 3600, time.time(),
                     "cpu" if device.lower() == "cpu" else device)
    print(plan.block(), flush=True)
    min_epochs = args.search_min_epochs or plan.epochs_needed  # the rule the plan read
    epochs, enough = trial_reach(plan, search_s, min_epochs)
    if epochs < min_epochs:
        # trials this short rank recipes by how fast they start, not where they end (a frozen backbone led by
        # +0.100 at 3 epochs and ended -0.021 after 106): a third of the budget spent on noise
        why = (f"its third of the budget ({cli.format_hours(search_s / 3600)}) buys each trial about {epochs:.0f} "
               f"epochs at the baseline's settings, fewer than the {min_epochs} a run needs before recipes can be "
               f"ranked (cfg/epochs_needed.yaml; --search-min-epochs)")
        finite = math.isfinite(enough)
        needs = f"; a search needs --time of about {cli.format_hours(enough / 3600)} or more here" if finite else ""
        print(f"budget {cli.format_hours(cfg['time'])}: no search: {why}{needs}. The whole budget trains the plan's "
              "choice, as plain --time.", flush=True)
        train.run(cfg, extra, started=started, given=given, measure=plan.measured(),  # its probes, not again
                  search={"skipped": why, "trial_epochs": round(epochs, 1), "min_epochs": min_epochs,
                          "budget_hours": cfg["time"],
                          "budget_hours_for_a_search": round(enough / 3600, 2) if finite else None})
        return 0
    base = _entry(cfg, given, chosen_settings(plan), extra)
    base["time"] = f"{budget - search_s:.0f}s"  # the baseline is the final model's training (trials get the search's R)
    spent = time.time() - started
    search_s = max(60.0, search_s - spent)
    print(f"budget {cli.format_hours(cfg['time'])}: the plan took {spent:.0f} s; the search {cli.format_hours(search_s / 3600)}"
          f" (a race on fold 0 of {FOLDS} of the dataset's photos, then its leaders checked against the baseline on "
          f"fold 1), the final model what is left (about {cli.format_hours((budget - spent - search_s) / 3600)})",
          flush=True)
    pretrained = bool(cfg.get("weights")) or str(cfg["model"]).endswith(".pt")
    exp_doc = {"train": str(_merged_photos(data_yaml, work)), "out": str(work / "exp"),
               "convert": {"folds": FOLDS, "seed": 0},
               "bootstrap": 200,
               "search": {"base": base, "space": default_space(base, pretrained), "trials": 100,
                          "budget": f"{search_s:.0f}s", "fold": 0, "pruner": "hyperband", "seed": int(cfg["seed"])}}
    exp_path = work / "search.yaml"
    exp_path.write_text(yaml.safe_dump(exp_doc, sort_keys=False), encoding="utf-8")
    from coco2yolo.kfold import __main__ as kfold

    code = cli.run(kfold.main, kfold.get_args_parser(), [str(exp_path), "--only", "search", "--devices",
                                                         "cpu" if device.lower() == "cpu" else (device or "0")])
    if code != 0:
        raise UserError(f"the recipe search failed (exit {code}); see {work / 'exp' / 'logs'}; nothing was trained")
    from coco2yolo.training.config import load_yaml_mapping

    best = load_yaml_mapping(work / "exp" / "search" / "best.yaml", "search result")
    decision = best.pop("search", {})
    best.pop("name", None)
    left_h = (budget - (time.time() - started)) / 3600
    if left_h * 3600 < 60:
        raise UserError(f"the search left {left_h * 3600:.0f} s of the {cli.format_hours(cfg['time'])} budget: raise "
                        "--time")
    final_cfg = dict(cfg)
    final_extra = dict(extra)
    for k, v in best.items():
        if k in final_cfg:
            final_cfg[k] = v
        elif config.is_ultralytics_key(k) or k in DEFAULT_CFG_DICT:
            final_extra[k] = v
    final_cfg.update({"time": left_h, "name": name})
    kept = decision.get("kept", "baseline")
    print(f"final model: {kept} ({' '.join(f'{k}={v}' for k, v in best.items() if k in exp_doc['search']['space'])})"
          f" for the {cli.format_hours(left_h)} left", flush=True)
    train.run(final_cfg, final_extra, given=set(final_cfg) | set(final_extra),
              search={"decision": decision, "baseline_plan": plan.record(), "folder": str(work / "exp" / "search"),
                      "budget_hours": cfg["time"], "search_seconds": round(search_s), "final_hours": round(left_h, 4)})
    return 0


def main(args: argparse.Namespace) -> int:
    if getattr(args, "search", False):
        return search_then_train(args)
    from coco2yolo.training import train

    return train.main(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
