"""``python -m coco2yolo.review``: the same as ``coco2yolo review``."""

import sys

from coco2yolo import cli
from coco2yolo.review.command import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
