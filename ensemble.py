#!/usr/bin/env python
"""Fuse several models' COCO results files, or tune the fusion on validation (see --help).

    python ensemble.py a.json b.json c.json --images test.json --method wbf --out fused.json [--weights 2 1 1]
    python ensemble.py a_val.json b_val.json --tune val.json --out val_fused.json
"""

import sys

from coco2yolo import cli
from coco2yolo.fusion.ensemble import get_args_parser, main

if __name__ == "__main__":
    sys.exit(cli.run(main, get_args_parser))
