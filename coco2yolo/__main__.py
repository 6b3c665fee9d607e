"""``python -m coco2yolo``: the COCO -> YOLO converter, or ``python -m coco2yolo COMMAND ...`` for any
subcommand of the ``coco2yolo`` command (see :mod:`coco2yolo.commands`)."""

import sys

from coco2yolo import cli
from coco2yolo.commands import SUBCOMMANDS, run_subcommand
from coco2yolo.dataset.convert import get_args_parser, main

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        sys.exit(run_subcommand(sys.argv[1], sys.argv[2:], prog="python -m coco2yolo"))
    sys.exit(cli.run(main, get_args_parser))
