#!/usr/bin/env python
"""Train an Ultralytics YOLO detector reproducibly (see `python train_yolo.py --help`).

    python train_yolo.py --data DIR/data.yaml --model M --epochs E --imgsz S --batch B --device D --seed S --name N
"""

import sys

from coco2yolo import cli
from coco2yolo.training.train import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
