"""coco2yolo: find household waste in photos with Ultralytics YOLO.

Stages (each one reads and writes COCO JSON):
convert (``python -m coco2yolo``) -> train (``train_yolo.py``) -> predict (``infer.py``)
-> fuse (``ensemble.py``) -> score (``evaluate.py``).
"""

__version__ = "0.1.0"
