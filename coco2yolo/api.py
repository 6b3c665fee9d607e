"""The Python API: each stage as a function of plain arguments that returns its result.

    import coco2yolo
    ds = coco2yolo.convert("data/recycle/train.json", "runs/data/fold0", clean=True, folds=5, fold=0)
    run = coco2yolo.train(ds.out / "data.yaml", model="yolov5lu.pt", epochs=100, imgsz=1024, name="v5l_fold0")
    coco2yolo.predict(run["weights"], ds.out / "val.json", "runs/preds/v5l_fold0_val.json")
    fused = coco2yolo.fuse(["a_val.json", "b_val.json"], ds.out / "val.json", out="fused.json")
    metrics = coco2yolo.evaluate(ds.out / "val.json", ["a_val.json", "fused.json"])
    print(metrics["files"][0]["mAP50"], metrics["differences"][0]["ci95"])

The functions do what the commands do (same checks, same outputs) and raise
:class:`coco2yolo.UserError` with the same one-line message where a command would exit with status 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coco2yolo.errors import UserError

PathLike = str | os.PathLike


def convert(json_path: PathLike, out: PathLike, *, images: PathLike | None = None, clean: bool | dict = False,
            folds: int | None = None, fold: int | None = None, val_fraction: float | None = None, seed: int = 0,
            copy: bool = False, crowd: str = "drop", strict: bool = False, disable: list[str] | None = None) -> Any:
    """COCO dataset JSON -> YOLO dataset folder ``out`` (``python -m coco2yolo``); returns a ``ConvertResult``
    (``.out``, ``.images``, ``.boxes``, ``.report``, ``.split_text``, ``.bad_images``).

    ``clean``: True for the default rules, or a dict of :class:`coco2yolo.dataset.clean.CleanConfig` fields
    (``{"dup_iou": 0.9, "drop_large": True}``); ``disable``: rule names to turn off.
    """
    from coco2yolo.dataset.clean import RULES, CleanConfig
    from coco2yolo.dataset.convert import ConvertOptions
    from coco2yolo.dataset.convert import convert as _convert

    if folds is not None and val_fraction is not None:
        raise UserError("use either folds and fold or val_fraction, not both")
    config = None
    if clean is not False and clean is not None:
        fields = dict(clean) if isinstance(clean, dict) else {}
        unknown = set(fields) - set(CleanConfig.__dataclass_fields__)
        if unknown:
            raise UserError(f"clean: unknown option {sorted(unknown)[0]!r}; allowed: "
                            f"{', '.join(CleanConfig.__dataclass_fields__)}")
        config = CleanConfig(**{**fields, **{r: False for r in (disable or []) if r in RULES}})
    return _convert(json_path, out, ConvertOptions(
        images_root=Path(images) if images else None, clean=config, folds=folds, fold=fold,
        val_fraction=0.2 if val_fraction is None and folds is None else val_fraction, seed=seed, copy=copy,
        crowd=crowd, strict=strict))


def train(data: PathLike, model: str | None = None, **options: Any) -> dict[str, Any]:
    """Train a YOLO detector (``train_yolo.py``); returns the weights' sidecar as a dict, with ``weights``
    set to the path of the best weights.

    ``options``: any key of ``coco2yolo/cfg/train.yaml`` (``epochs``, ``imgsz``, ``batch``, ``device``,
    ``name``, ``mosaic``, ``augment_preset``, ``exist_ok``, ...) or any other Ultralytics train argument
    (``shear=2.0``), checked as the command checks them.
    """
    from coco2yolo import ultra
    from coco2yolo.training import config
    from coco2yolo.training.train import run

    ultra.setup()
    base = config.defaults()
    own = {k: v for k, v in options.items() if k in base}
    extra = {k: v for k, v in options.items() if k not in base}
    own.update({"data": str(data)}, **({"model": model} if model is not None else {}))
    cfg = config.merge(base, own, "train()")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    reserved = {k for k in cfg if config.is_ultralytics_key(k)} | set(config.MANAGED)
    bad = [k for k in extra if k not in DEFAULT_CFG_DICT or k in reserved]
    if bad:
        raise UserError(f"train(): unknown option {bad[0]!r}; use the keys of {config.DEFAULTS_FILE.name} or "
                        "Ultralytics train arguments")
    sidecar = run(cfg, config.check_ultralytics_values(extra, "train()") if extra else {},
                  given=set(options) | ({"model"} if model is not None else set()))
    return {**sidecar, "weights": str(Path(cfg["weights_dir"]) / f"{sidecar['config']['name']}.pt")}


def predict(weights: PathLike, images: PathLike, out: PathLike, **options: Any) -> dict[str, Any]:
    """Predict COCO results with the original category ids (``infer.py``) into ``out``; returns a summary
    (images, predicted, unread, boxes, seconds, imgsz).

    ``options``: the flags of infer.py by their Python names (``tta``, ``conf``, ``iou``, ``agnostic``,
    ``max_det``, ``imgsz``, ``batch``, ``half``, ``device``, ``submission``, ``save_vis``, ``strict``, ...).
    """
    from coco2yolo.inference import PredictOptions, run

    unknown = set(options) - set(PredictOptions.__dataclass_fields__)
    if unknown:
        raise UserError(f"predict(): unknown option {sorted(unknown)[0]!r}; allowed: "
                        f"{', '.join(k for k in PredictOptions.__dataclass_fields__ if k not in ('weights', 'images', 'out'))}")
    return run(PredictOptions(weights=str(weights), images=str(images), out=str(out), **options).check())


def fuse(results: list[PathLike], images: PathLike, out: PathLike | None = None, *, setting: PathLike | None = None,
         submission: PathLike | None = None, max_det: int = 0, **fusion: Any) -> Any:
    """Fuse several models' results (``ensemble.py``); returns the fused detections (a ``Detections``
    with ``image_id``, ``category_id``, ``xywh``, ``score`` arrays) and writes ``out``/``submission`` if given.

    ``fusion``: ``method``, ``model_weights``, ``iou_thr``, ``skip_box_thr``, ``conf_type``, ``sigma``,
    ``soft_thresh``; or ``setting``, a file written by ``ensemble.py --tune``.
    """
    from coco2yolo.fusion.ensemble import fuse_files

    return fuse_files([str(p) for p in results], str(images), out=out, setting=setting, submission=submission,
                      max_det=max_det, **fusion)


def evaluate(gt: PathLike, results: list[PathLike], *, bootstrap: int = 1000, seed: int = 0, max_dets: int = 100,
             backend: str = "faster", json: PathLike | None = None, plot: PathLike | None = None) -> dict[str, Any]:
    """Score results files against ground truth (``evaluate.py``); returns the metrics as ``--json`` writes
    them: ``files[i]`` (mAP50, mAP50_95, mAP50_ci95, per_class_AP50) and ``differences`` (paired, with ci95)."""
    from coco2yolo.evaluation.command import evaluate_and_write

    return evaluate_and_write(str(gt), [str(p) for p in results], n_boot=bootstrap, seed=seed, max_dets=max_dets,
                              backend=backend, json_out=json, plot=plot)
