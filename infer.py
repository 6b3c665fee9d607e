#!/usr/bin/env python
"""Predict COCO-format scored boxes with the original category ids (see `python infer.py --help`).

    python infer.py --weights weights/N.pt --images test.json --out preds.json [--tta] [--submission sub.csv]
"""

import sys

from coco2yolo import cli
from coco2yolo.inference import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
