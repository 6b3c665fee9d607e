"""The ``coco2yolo`` command: one entry point with a subcommand per stage, in the style of ``yolo``.

    coco2yolo convert|train|predict|fuse|evaluate|kfold|label-issues|review|export|fiftyone|submission|sidecar|sample|demo ARGS...

Each subcommand is the same program as its script (``python -m coco2yolo``, ``train_yolo.py``,
``infer.py``, ``ensemble.py``, ``evaluate.py``, ``python -m coco2yolo.X``), with the same flags.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from coco2yolo import __version__, cli

# subcommand -> (module, what it does)
SUBCOMMANDS = {
    "convert": ("coco2yolo.dataset.convert", "COCO -> cleaned, split YOLO dataset (python -m coco2yolo)"),
    "train": ("coco2yolo.kfold.solo", "train a YOLO detector (train_yolo.py; --time plans it, --search searches too)"),
    "predict": ("coco2yolo.inference", "COCO results with the original ids (infer.py)"),
    "fuse": ("coco2yolo.fusion.ensemble", "fuse several models' results, or tune the fusion (ensemble.py)"),
    "evaluate": ("coco2yolo.evaluation.command", "mAP50 with intervals and paired differences (evaluate.py)"),
    "kfold": ("coco2yolo.kfold.__main__", "the k-fold experiment in one command (python -m coco2yolo.kfold)"),
    "label-issues": ("coco2yolo.label_issues", "rank the annotations most likely wrong (python -m coco2yolo.label_issues)"),
    "export": ("coco2yolo.export", "weights to ONNX with their category map, for deployment"),
    "review": ("coco2yolo.review.command", "decide label issues on one page; 'review apply' writes the fixed dataset"),
    "fiftyone": ("coco2yolo.browse", "ground truth, results and label issues as a FiftyOne dataset (extra)"),
    "submission": ("coco2yolo.submission", "check a competition submission CSV before upload"),
    "sidecar": ("coco2yolo.sidecar", "write the sidecar of weights trained elsewhere"),
    "sample": ("coco2yolo.sample", "write the built-in synthetic sample dataset"),
    "demo": ("coco2yolo.demo", "the whole pipeline on the sample"),
}


SCRIPTS = {"convert": None, "train": "train_yolo.py", "predict": "infer.py", "fuse": "ensemble.py",
           "evaluate": "evaluate.py"}


def script_command(subcommand: str) -> list[str]:
    """How to run a stage as a user types it: the checkout's script (``python train_yolo.py``, or
    ``python -m coco2yolo`` to convert), else ``python -m coco2yolo SUBCOMMAND`` (an installed package)."""
    from coco2yolo import ultra

    script = SCRIPTS.get(subcommand)
    if subcommand == "convert":
        return [sys.executable, "-m", "coco2yolo"]
    path = ultra.PROJECT_ROOT / script if script else None
    if path is not None and path.is_file():
        return [sys.executable, str(path)]
    return [sys.executable, "-m", "coco2yolo", subcommand]


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in SUBCOMMANDS.items())
    return (f"usage: coco2yolo COMMAND [ARGS...]   (coco2yolo COMMAND --help for its flags)\n\ncommands:\n{rows}\n")


def run_subcommand(name: str, argv: Sequence[str], prog: str = "coco2yolo") -> int:
    """Run subcommand ``name`` with ``argv`` as its own script would; return the exit status."""
    try:
        module = importlib.import_module(SUBCOMMANDS[name][0])
    except cli.UserError as err:  # a setup check at import (a torch/torchvision pair that does not match)
        print(f"{prog} {name}: error: {err}", file=sys.stderr)
        return cli.EXIT_USER_ERROR

    def parser():
        p = module.get_args_parser()
        p.prog = f"{prog} {name}"
        return p

    return cli.run(module.main, parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0 if argv else cli.EXIT_USER_ERROR
    if argv[0] in ("-V", "--version"):
        print(f"coco2yolo {__version__}")
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"coco2yolo: error: unknown command {argv[0]!r}{cli.closest(argv[0], list(SUBCOMMANDS))}; "
              f"commands: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return cli.EXIT_USER_ERROR
    return run_subcommand(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
