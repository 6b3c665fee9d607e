"""``python -m coco2yolo``: the COCO -> YOLO converter."""

import sys

from coco2yolo import cli
from coco2yolo.dataset.convert import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
