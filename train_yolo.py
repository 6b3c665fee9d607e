#!/usr/bin/env python
"""Train an Ultralytics YOLO detector reproducibly (see `python train_yolo.py --help`).

    python train_yolo.py --data DIR/data.yaml --model M --epochs E --imgsz S --batch B --device D --seed S --name N
    python train_yolo.py --data DIR/data.yaml --time 1h [--search]   (a budget: planned; --search: searched too)
"""

import sys

from coco2yolo import cli
from coco2yolo.kfold.solo import get_args_parser, main  # the training, or --search: a search then the training

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
