#!/usr/bin/env python
"""Score COCO results files: mAP50, mAP50:95, per-class AP50, bootstrap intervals.

    python evaluate.py --gt val.json preds.json [more.json ...] [--json metrics.json] [--plot DIR] [--bootstrap 1000]
"""

import sys

from coco2yolo import cli
from coco2yolo.evaluation.command import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
