#!/usr/bin/env python
"""A larger fuzz and kill campaign than the tests run; its counts go into RELIABILITY.md.

    python bench/bench_reliability.py [--fuzz 300] [--kills 60] [--seed 0]

Fuzz: every reader gets ``--fuzz`` mutated inputs (tests/fuzzing.py: values replaced by odd ones,
keys deleted, records duplicated, bytes truncated or flipped, deep nesting). Each run must end in
exit 0 or 2 with one line, never a traceback, and leave every input file's hash unchanged.
Kills: ``--kills`` runs of each command SIGKILLed at a uniformly random moment of its run time;
half the kills fall anywhere in [0, 1.3] x the longest of three run times, half in [0.8, 1.3] x (around the moment
the output is committed); each kill is counted by whether the process was still running; the output must be absent, old and whole, or new and whole, and a final run must leave
nothing beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from common import ROOT, record

sys.path.insert(0, str(ROOT / "bench"))

sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import mutated  # noqa: E402
from helpers import ann, make_coco  # noqa: E402
from killing import leftovers, run_and_kill, timed, tree_digest  # noqa: E402

from coco2yolo import cli, label_issues, sidecar, submission  # noqa: E402
from coco2yolo import inference as predict  # noqa: E402
from coco2yolo.dataset import convert as conv  # noqa: E402
from coco2yolo.evaluation import command as evaluation  # noqa: E402
from coco2yolo.fusion import ensemble as ensembling  # noqa: E402
from coco2yolo.kfold import __main__ as kfold_cli  # noqa: E402


OUTPUTS = {"side.json"}  # the sidecar command's own output, written beside the weights it is given


def _digest(folder: Path) -> dict[str, str]:
    """Hashes of every input file under ``folder`` (outputs: the out/ folder and OUTPUTS)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink() and "out" not in p.parts
            and p.name not in OUTPUTS}


def _call(main, parser, argv, lines_start: str | None = None) -> tuple[str, str]:
    """The outcome of one run; exit 2 must print one line, or with ``lines_start`` (a checker listing every
    problem) lines that each start with it."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.run(main, parser, [str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # noqa: BLE001 - what the campaign counts
            return "traceback", traceback.format_exc(limit=3)
    text = err.getvalue()
    lines = text.strip().splitlines()
    one = len(lines) == 1 or (lines_start is not None and bool(lines)
                              and all(ln.startswith(lines_start) for ln in lines))
    if "Traceback" in text or code not in (0, 2) or (code == 2 and not one):
        return "bad exit", text[-500:]
    return f"exit {code}", ""


def fuzz(n: int, seed: int, work: Path, weights: Path | None) -> dict:
    images = [(i, f"train/{i}.jpg", 32, 32) for i in range(4)]
    anns = [ann(0, 0, 0, [2, 2, 10, 10]), ann(1, 1, 1, [5, 5, 8, 8]), ann(2, 2, 0, [1, 1, 20, 20]),
            ann(3, 3, 1, [3, 3, 3, 3])]
    gt_path = make_coco(work / "ds", images, anns, [0, 1])
    gt = json.loads(gt_path.read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.8} for a in anns]
    setting = ensembling.setting_doc(dict(ensembling.DEFAULTS), 2)
    fixed_gt = work / "ds" / "gt_ok.json"
    fixed_gt.write_text(json.dumps(gt))
    fixed_p = work / "ds" / "p_ok.json"
    fixed_p.write_text(json.dumps(preds))
    if weights is not None:  # own copies: the sidecar command writes N.json beside the weights it is given
        (work / "w").mkdir()
        for suffix in (".pt", ".json"):
            shutil.copy(weights.with_suffix(suffix), work / "w" / f"infer{suffix}")
        shutil.copy(weights, work / "w" / "side.pt")
        weights, side_weights = work / "w" / "infer.pt", work / "w" / "side.pt"
    readers = {
        "convert: COCO JSON": (conv, gt, lambda f: [f, "--out", work / "out" / "c", "--val-fraction", "0.5"]),
        "evaluate: --gt": (evaluation, gt, lambda f: ["--gt", f, fixed_p, "--bootstrap", "5"]),
        "evaluate: results": (evaluation, preds, lambda f: ["--gt", fixed_gt, f, "--bootstrap", "5"]),
        "ensemble: results": (ensembling, preds, lambda f: [f, fixed_p, "--images", fixed_gt,
                                                            "--out", work / "out" / "e.json"]),
        "ensemble: --images": (ensembling, gt, lambda f: [fixed_p, fixed_p, "--images", f,
                                                          "--out", work / "out" / "e.json"]),
        "ensemble: --setting": (ensembling, setting, lambda f: [fixed_p, fixed_p, "--images", fixed_gt, "--setting",
                                                                f, "--out", work / "out" / "e.json"]),
        "ensemble: --tune": (ensembling, gt, lambda f: [fixed_p, fixed_p, "--tune", f, "--bootstrap", "5",
                                                        "--tune-iou", "0.5", "--tune-methods", "wbf",
                                                        "--out", work / "out" / "e.json"]),
        "label_issues: --gt": (label_issues, gt, lambda f: ["--gt", f, "--preds", fixed_p, "--out",
                                                            work / "out" / "i.json"]),
        "label_issues: --preds": (label_issues, preds, lambda f: ["--gt", fixed_gt, "--preds", f, "--out",
                                                                  work / "out" / "i.json"]),
        "kfold: experiment file": (kfold_cli, {"train": str(fixed_gt), "out": str(work / "out" / "exp"),
                                               "convert": {"folds": 2}, "models": [{"name": "a", "epochs": 1}],
                                               "predict": {"conf": 0.001}, "fuse": {"iou": [0.5]}},
                                   lambda f: [f, "--dry-run", "--devices", "cpu"]),
        "sidecar: --categories": (sidecar, {"categories": [{"class_index": 0, "category_id": 0, "name": "a"}]},
                                  lambda f: [side_weights, "--categories", f, "--imgsz", "64"]),
    }
    if weights is not None:
        readers["infer: --images"] = (predict, {"images": gt["images"], "categories": gt["categories"]},
                                      lambda f: ["--weights", weights, "--images", f, "--out", work / "out" / "p.json",
                                                 "--device", "cpu"])
    else:
        readers.pop("sidecar: --categories")
    csv_text = "PredictionString,image_id\n" + "".join(f"0 0.9 1 1 5 5,{im['file_name']}\n" for im in gt["images"])
    out: dict = {}
    rng_csv = random.Random(f"{seed}-csv")
    from fuzzing import mutate_bytes

    counts: Counter[str] = Counter()
    for _ in range(n):
        text = csv_text.encode()
        for _ in range(rng_csv.randint(1, 3)):
            text = mutate_bytes(text, rng_csv)
        f = work / "ds" / "fuzz.csv"
        f.write_bytes(text)
        before = _digest(work)
        outcome, _ = _call(submission.main, submission.get_args_parser(), ["check", f, "--images", fixed_gt],
                            lines_start=f"{f}: ")
        counts[outcome] += 1
        counts["input changed"] += _digest(work) != before
    out["submission check: CSV (byte mutations)"] = {"tried": n, **{k: v for k, v in counts.items() if v}}
    print(out, flush=True)
    for name, (module, doc, argv) in readers.items():
        rng = random.Random(f"{seed}-{name}")
        counts: Counter[str] = Counter()
        examples = []
        count = n if not name.startswith("infer") else max(10, n // 10)
        for _ in range(count):
            f = work / "ds" / ("fuzz.yaml" if name.startswith("kfold") else "fuzz.json")
            f.write_bytes(mutated(doc, rng))  # JSON is YAML too
            before = _digest(work)
            outcome, detail = _call(module.main, module.get_args_parser(), argv(f))
            counts[outcome] += 1
            if _digest(work) != before:
                counts["input changed"] += 1
            if detail and len(examples) < 3:
                examples.append(detail)
        out[name] = {"tried": count, **dict(counts), **({"examples": examples} if examples else {})}
        print(name, out[name], flush=True)
    return out


def kills(n: int, seed: int, work: Path) -> dict:
    from coco2yolo.sample import make_sample

    sample = make_sample(work / "sample", n_train=600, n_test=4, size=32, seed=3)
    rng = random.Random(seed)
    res: dict = {}
    out = work / "kill_out"

    def conv_cmd(s):
        return [sys.executable, "-m", "coco2yolo", str(sample), "--out", str(out), "--folds", "3", "--fold", "0",
                "--seed", str(s)]

    duration = max(timed(conv_cmd(1), cwd=ROOT) for _ in range(3))  # run times vary 4x with file-system latency
    new = tree_digest(out)
    timed(conv_cmd(0), cwd=ROOT)
    old = tree_digest(out)
    c: Counter[str] = Counter()
    for _ in range(n):
        if tree_digest(out) != old:
            timed(conv_cmd(0), cwd=ROOT)
        alive = run_and_kill(conv_cmd(1), duration * rng.choice([rng.uniform(0, 1.3), rng.uniform(0.8, 1.3)]),
                             cwd=ROOT)
        state = tree_digest(out)
        what = "old and whole" if state == old else "new and whole" if state == new else "BROKEN"
        c[f"killed: {what}" if alive else f"finished before the kill: {what}"] += 1
    timed(conv_cmd(1), cwd=ROOT)
    c["leftovers after a final run"] = len(leftovers(out))
    res["convert (folder output, seconds per run %.2f)" % duration] = dict(c)
    print(res, flush=True)

    gt = sample
    data = json.loads(gt.read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.7}
             for a in data["annotations"]] * 3
    pfile = work / "preds.json"
    pfile.write_text(json.dumps(preds))
    for name, target, cmd in [
        ("evaluate --json (single file)", work / "m.json",
         [sys.executable, str(ROOT / "evaluate.py"), "--gt", str(gt), str(pfile), "--json", str(work / "m.json")]),
        ("ensemble --out + --submission (two files committed together)", work / "f.json",
         [sys.executable, str(ROOT / "ensemble.py"), str(pfile), str(pfile), "--images", str(gt), "--out",
          str(work / "f.json"), "--submission", str(work / "f.csv")]),
    ]:
        duration = max(timed(cmd) for _ in range(3))
        whole = target.read_bytes()
        second = work / "f.csv"
        whole_csv = second.read_bytes() if "ensemble" in name else None
        c = Counter()
        for _ in range(n):
            target.unlink(missing_ok=True)
            second.unlink(missing_ok=True)
            alive = run_and_kill(cmd, duration * rng.choice([rng.uniform(0, 1.3), rng.uniform(0.8, 1.3)]))
            if not target.exists():
                state = "absent" if not (whole_csv and second.exists()) else "BROKEN (one of two)"
            else:
                state = "new and whole" if target.read_bytes() == whole else "BROKEN"
                if whole_csv is not None and (not second.exists() or second.read_bytes() != whole_csv):
                    state = "BROKEN (one of two)"
            c[f"killed: {state}" if alive else f"finished before the kill: {state}"] += 1
        timed(cmd)
        c["leftovers after a final run"] = len(leftovers(target))
        res[f"{name}, seconds per run {duration:.2f}"] = dict(c)
        print(name, dict(c), flush=True)
    return res


def hostile_families(n: int, seed: int, work: Path, weights: Path | None) -> dict:
    """Issue 16's and 27's families (bench/hostile.py): checkpoints, ONNX files, links and pipes, photos, CSV
    numbers."""
    import hostile

    out: dict = {}
    (work / "h").mkdir()
    images = {"images": [{"id": i, "file_name": f"train/{i}.jpg", "width": 64, "height": 64} for i in range(3)],
              "categories": [{"id": k, "name": str(k)} for k in range(10)]}
    (work / "h" / "images.json").write_text(json.dumps(images))
    import cv2
    import numpy as np

    for i in range(3):
        (work / "h" / "train").mkdir(exist_ok=True)
        cv2.imwrite(str(work / "h" / "train" / f"{i}.jpg"), np.full((64, 64, 3), 50 * i, np.uint8))
    if weights is not None:
        side = work / "h" / "side.json"
        shutil.copy(weights.with_suffix(".json"), side)
        out["checkpoints (infer.py --weights)"] = hostile.checkpoints(weights, side, n, seed, work / "h")
        print(out, flush=True)
    out["ONNX files (infer.py --weights N.onnx)"] = hostile.onnx_files(max(20, n // 2), seed, work / "h")
    print(out, flush=True)
    if weights is not None:
        out["links and named pipes"] = hostile.links_and_pipes(weights, work, max(5, n // 10), seed)
        print(out, flush=True)
    out["photos (convert --clean)"] = hostile.photos(max(10, n // 5), seed, work)
    out["submission numbers"] = hostile.csv_numbers(n, seed, work / "h", work / "h" / "images.json")
    print(out, flush=True)
    return out


def _sub(work: Path, name: str) -> Path:
    """A folder of its own for each part: the fuzz hashes every input file under its folder before and after
    each case, so the other parts' files must not be there."""
    (work / name).mkdir()
    return work / name


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fuzz", type=int, default=300)
    p.add_argument("--kills", type=int, default=60)
    p.add_argument("--hostile", type=int, default=300, help="cases per family of issue 16 (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="weights with a sidecar, for the infer and sidecar readers")
    args = p.parse_args()
    from coco2yolo import ultra

    ultra.setup()
    work = Path(tempfile.mkdtemp(prefix="bench_rel_"))
    t0 = time.time()
    weights = Path(args.weights).resolve() if args.weights else None
    os.chdir(work)  # relative paths the fuzz makes up (an experiment's "out: NaN") land in work, not here
    result = {"command": f"python bench/bench_reliability.py --fuzz {args.fuzz} --kills {args.kills} "
                         f"--hostile {args.hostile} --seed {args.seed}" + (f" --weights {args.weights}" if args.weights else ""),
              "hostile": hostile_families(args.hostile, args.seed, _sub(work, "hostile"), weights) if args.hostile else {},
              "fuzz": fuzz(args.fuzz, args.seed, _sub(work, "fuzz"), weights),
              "kills": kills(args.kills, args.seed, _sub(work, "kills"))}
    result["seconds"] = round(time.time() - t0)
    os.chdir(ROOT)
    shutil.rmtree(work, ignore_errors=True)
    record("reliability", result)


if __name__ == "__main__":
    main()
