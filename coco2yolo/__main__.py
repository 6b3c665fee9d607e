"""``python -m coco2yolo``: the COCO -> YOLO converter."""

import sys

from . import cli
from .convert import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser()))
