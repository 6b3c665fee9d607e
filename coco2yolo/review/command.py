"""``coco2yolo review``: the page, ``apply`` and ``from-fiftyone`` (see :mod:`coco2yolo.review`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from coco2yolo import cli
from coco2yolo.dataset.issues import ISSUE_KINDS


def page_parser(prog: str = "coco2yolo review") -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=prog, description="One self-contained page to decide label issues one by one "
                           "(a accept, r reject, e edit, z undo); its decisions file feeds 'coco2yolo review apply'. "
                           "Also: 'coco2yolo review apply ...', 'coco2yolo review from-fiftyone ...'.")
    p.add_argument("issues", help="the issues JSON of python -m coco2yolo.label_issues")
    p.add_argument("--gt", required=True, help="the COCO dataset the issues were found in")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--images", default=None, help="the folder file_names are relative to (default: --gt's folder)")
    p.add_argument("--kinds", nargs="+", choices=ISSUE_KINDS, default=list(ISSUE_KINDS), metavar="KIND",
                   help=f"only these kinds ({' '.join(ISSUE_KINDS)}; all by default)")
    p.add_argument("--crop", type=cli.number(64, 4096, integer=True), default=512,
                   help="longest side of each photo crop in the page, px (512)")
    p.add_argument("--max-mb", type=cli.number(0.1), default=200.0,
                   help="size cap on the page's photos, MB (200; issues past it are shown without a photo)")
    return p


def apply_parser(prog: str = "coco2yolo review apply") -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=prog, description="Apply decisions on label issues: the corrected COCO file and "
                           "a changes file beside it; the input is never touched.")
    p.add_argument("--gt", required=True, help="the COCO dataset to correct")
    p.add_argument("--issues", required=True, help="the issues JSON of python -m coco2yolo.label_issues")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--decisions", default=None, help="the decisions file (the review page's download, or "
                     "coco2yolo review from-fiftyone)")
    how.add_argument("--accept-top", type=cli.POSITIVE_INT, default=None, metavar="K",
                     help="accept the K best-ranked issues' suggested fixes")
    how.add_argument("--accept-score", type=cli.number(0, 1), default=None, metavar="S",
                     help="accept every issue scored S or more")
    p.add_argument("--kinds", nargs="+", choices=ISSUE_KINDS, default=None, metavar="KIND",
                   help="only issues of these kinds are decided (with --accept-top/--accept-score: ranked among "
                        "themselves)")
    p.add_argument("--out", required=True, help="the corrected COCO JSON (FIXED.json; FIXED.changes.csv beside it)")
    return p


def fiftyone_parser(prog: str = "coco2yolo review from-fiftyone") -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog=prog, description="The accept/reject tags set in the FiftyOne App on label "
                           "issues (coco2yolo fiftyone --issues) as a decisions file.")
    p.add_argument("dataset", help="the FiftyOne dataset's name")
    p.add_argument("--out", required=True, help="the decisions JSON to write")
    return p


def page_main(args: argparse.Namespace) -> int:
    from coco2yolo.cocodata import load_dataset
    from coco2yolo.dataset.issues import issues_for
    from coco2yolo.fileio import guard_outputs, write_text
    from coco2yolo.review.page import render_page

    guard_outputs({"--out": args.out}, {"--gt": args.gt, "ISSUES": args.issues})
    data = load_dataset(args.gt)
    issues = [r for r in issues_for(args.issues, data) if r["kind"] in args.kinds]
    root = Path(args.images) if args.images else Path(args.gt).parent
    if args.images and not root.is_dir():
        raise cli.UserError(f"--images {root} is not a folder")
    html = render_page(data, issues, root, issues_path=args.issues, gt_path=args.gt, max_side=args.crop,
                       max_mb=args.max_mb)
    write_text(args.out, html)
    print(f"wrote {args.out}: {len(issues)} issues to decide ({len(html.encode()) / 1e6:.1f} MB); open it in a browser, "
          f"then: coco2yolo review apply --gt {args.gt} --issues {args.issues} --decisions decisions.json --out FIXED.json")
    return 0


def apply_main(args: argparse.Namespace) -> int:
    from coco2yolo.review.apply import run

    s = run(args.gt, args.issues, args.out, args.decisions, args.accept_top, args.accept_score, args.kinds)
    print(f"wrote {args.out}: {s['changes']} changes ({s['class']} classes, {s['box']} boxes, {s['removed']} removed, "
          f"{s['added']} added) from {s['accepted']} accepted of {s['issues']} issues; {s['rejected']} rejected, "
          f"{s['already applied']} already applied, {s['issues'] - s['decided']} undecided; each change in "
          f"{s['changes_file']}")
    return 0


def fiftyone_main(args: argparse.Namespace) -> int:
    from coco2yolo.fileio import guard_outputs, write_json
    from coco2yolo.review.fiftyone import decisions_from_fiftyone

    guard_outputs({"--out": args.out}, {})
    records, counts = decisions_from_fiftyone(args.dataset)
    write_json(args.out, records, indent=1)
    print(f"wrote {args.out}: {len(records)} decisions ({counts['accept']} accept, {counts['reject']} reject) from the "
          f"tags on {counts['issues']} label issues of FiftyOne dataset {args.dataset}")
    return 0


SUBCOMMANDS = {"apply": (apply_main, apply_parser), "from-fiftyone": (fiftyone_main, fiftyone_parser)}


class _Dispatch(cli.ArgumentParser):
    """``coco2yolo review ISSUES ...`` or ``coco2yolo review apply|from-fiftyone ...``: parses with the right
    parser and records which main runs."""

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        if argv and argv[0] in SUBCOMMANDS:
            run_main, build = SUBCOMMANDS[argv[0]]
            ns = build(f"{self.prog} {argv[0]}").parse_args(argv[1:])
        else:
            run_main, ns = page_main, page_parser(self.prog).parse_args(argv)
        ns._main = run_main
        return ns


def get_args_parser() -> argparse.ArgumentParser:
    return _Dispatch(prog="coco2yolo review", add_help=False)


def main(args: argparse.Namespace) -> int:
    return args._main(args)
