"""coco2yolo: find household waste in photos with Ultralytics YOLO.

Stages (each one reads and writes COCO JSON):
convert (``python -m coco2yolo``) -> train (``train_yolo.py``) -> predict (``infer.py``)
-> fuse (``ensemble.py``) -> score (``evaluate.py``); or one command, ``coco2yolo COMMAND``.

The same stages as functions (see :mod:`coco2yolo.api`)::

    import coco2yolo
    ds = coco2yolo.convert("train.json", "runs/data", clean=True, folds=5, fold=0)
    run = coco2yolo.train(ds.out / "data.yaml", model="yolov5lu.pt", epochs=100, name="v5l")
    coco2yolo.predict(run["weights"], ds.out / "val.json", "preds.json")
    print(coco2yolo.evaluate(ds.out / "val.json", ["preds.json"])["files"][0]["mAP50"])
"""

from coco2yolo.errors import UserError

__version__ = "0.2.0"
__all__ = ["UserError", "convert", "evaluate", "fuse", "predict", "train"]
_API = ("convert", "train", "predict", "fuse", "evaluate")


def __getattr__(name: str):
    """The API functions, imported on first use (``import coco2yolo`` stays light)."""
    if name in _API:
        from coco2yolo import api

        return getattr(api, name)
    raise AttributeError(f"module 'coco2yolo' has no attribute {name!r}")
