"""Issue 16's families for bench/bench_reliability.py: hostile checkpoints, links and pipes, photos, CSV numbers.

Checkpoints are judged in a child process (``python bench/hostile.py --child FILES OUT``) that loads each
file with ``infer.py`` and records the outcome, connection attempts and memory; a crash of the child
(a signal) is recorded against the file it was loading, and the child restarts after it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


class Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _classes():
    import torch.nn as nn
    from ultralytics.nn.modules import C3, Conv, Detect, TorchVision

    return [(nn.Linear, lambda r: (r.choice([4, 25000, 10**5]), r.choice([4, 25000, 10**5]))),
            (nn.Conv2d, lambda r: (r.choice([3, 4096]), r.choice([16, 65536]), r.choice([1, 3, 99]))),
            (nn.Embedding, lambda r: (r.choice([10, 10**8]), r.choice([8, 1024]))),
            (TorchVision, lambda r: (r.choice(["resnet18", "convnext_base"]), "DEFAULT", True, 2, True)),
            (Conv, lambda r: (r.choice([3, 10**5]), r.choice([16, 10**5]))),
            (C3, lambda r: (r.choice([16, 4096]), r.choice([16, 4096]), r.choice([1, 10**4]))),
            (Detect, lambda r: (r.choice([10, 10**6]), (r.choice([16, 4096]),)))]


def checkpoint_variants(genuine: Path, n: int, seed: int, work: Path) -> list[Path]:
    """``n`` hostile variants of a genuine checkpoint (both torch formats)."""
    import numpy as np
    import torch

    from fuzzing import mutate_bytes, mutate_doc

    rng = random.Random(f"{seed}-ckpt")
    classes = _classes()
    files = []
    for k in range(n):
        ckpt = torch.load(genuine, map_location="cpu", weights_only=False)  # our own file
        model = ckpt["model"]
        mods = [m for m in model.modules() if m._modules]
        kind = rng.randrange(6)
        if kind == 0:  # a constructor with the file's arguments, in the model or beside it
            cls, args = rng.choice(classes)
            node = Reduce(cls, *args(rng))
            if rng.random() < 0.5:
                parent = rng.choice(mods)
                parent._modules[rng.choice(list(parent._modules))] = node
            else:
                ckpt["extra"] = node
        elif kind == 1:  # numpy's scalar over file bytes
            dt = rng.choice([np.dtype([("a", "O")]), np.dtype("O"), np.dtype("f8"), np.dtype([("a", "O"), ("b", "i8")])])
            ckpt["best_fitness"] = Reduce(np.core.multiarray.scalar, dt, bytes(rng.randrange(256) for _ in range(8)))
        elif kind == 2:  # a hook on a module
            m = rng.choice(list(model.modules()))
            hooks = rng.choice(["_state_dict_hooks", "_forward_hooks", "_load_state_dict_pre_hooks"])
            getattr(m, hooks)[0] = rng.choice(classes)[0]
        elif kind == 3:  # the model yaml mutated
            for _ in range(rng.randint(1, 3)):
                model.yaml = mutate_doc(model.yaml, rng)
        elif kind == 4:  # a tensor swapped for one of another shape
            m = rng.choice([m for m in model.modules() if m._parameters])
            name = rng.choice(list(m._parameters))
            m._parameters[name] = torch.nn.Parameter(torch.zeros(*[rng.choice([1, 2, 7]) for _ in range(rng.randint(1, 4))]))
        path = work / f"ckpt{k}.pt"
        torch.save(ckpt, path, _use_new_zipfile_serialization=rng.random() < 0.7)
        if kind == 5:  # bytes: truncated, flipped, inserted
            data = path.read_bytes()
            for _ in range(rng.randint(1, 3)):
                data = mutate_bytes(data, rng) if len(data) < 50_000_000 else data
            path.write_bytes(data)
        files.append(path)
    return files


def _child(files: list[str], out: str, sidecar: str) -> None:
    """Load each file with infer.py; one JSON line per file: outcome, connections, memory growth."""
    from coco2yolo import cli, ultra

    ultra.setup()
    from coco2yolo import inference as predict

    attempts: list = []

    def refuse(self, address, *a, **k):
        attempts.append(str(address))
        raise OSError("network disabled")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    images = Path(sidecar).parent / "images.json"
    with open(out, "a", encoding="utf-8") as log:
        for f in files:
            Path(f).with_suffix(".json").write_text(Path(sidecar).read_text())
            log.write(json.dumps({"file": f, "start": True}) + "\n")
            log.flush()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            err = io.StringIO()
            attempts.clear()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli.run(predict.main, predict.get_args_parser(),
                                   ["--weights", f, "--images", str(images), "--out", f + ".preds.json",
                                    "--device", "cpu"])
                except BaseException as exc:  # noqa: BLE001 - what the campaign counts
                    code = f"traceback {type(exc).__name__}"
            text = err.getvalue()
            one = len(text.strip().splitlines()) == 1
            outcome = (f"exit {code}" if code in (0, 2) and "Traceback" not in text and (code == 0 or one)
                       else f"bad: {str(code)[:60]}")
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            log.write(json.dumps({"file": f, "outcome": outcome, "connections": len(attempts),
                                  "rss_growth_mb": grew / 1024, "line": text.strip()[-200:]}) + "\n")
            log.flush()


def checkpoints(genuine: Path, sidecar: Path, n: int, seed: int, work: Path) -> dict:
    return judged([str(p) for p in checkpoint_variants(genuine, n, seed, work)], sidecar, work / "ckpt_log.jsonl")


def onnx_files(n: int, seed: int, work: Path) -> dict:
    """The crafted ONNX files of tests/onnx_crafted.py (issue 27's audit and more) and ``n`` random mutations of
    its minimal detector, each given to infer.py in the watched child (sidecar: 2 classes, 64 px)."""
    from onnx_crafted import cases, mutated, sidecar

    files = [str(p) for _, p, _ in cases(work / "onnx_cases", seed)] + [str(p) for p in mutated(work / "onnx_mut", n, seed)]
    side = sidecar(work / "onnx_side.onnx", 2, 64)
    return judged(files, side, work / "onnx_log.jsonl")


def judged(files: list[str], sidecar: Path, log: Path) -> dict:
    """Each file loaded by infer.py in a watched child (restarted after a crash): outcomes, connections, memory."""
    done: dict[str, dict] = {}
    left = list(files)
    while left:
        proc = subprocess.run([sys.executable, __file__, "--child", str(log), str(sidecar), *left],
                              capture_output=True, text=True)
        started = None
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("start"):
                started = rec["file"]
            else:
                done[rec["file"]] = rec
                started = None
        if proc.returncode != 0 and started is not None:
            done[started] = {"file": started, "outcome": f"CRASH (exit {proc.returncode})", "connections": 0,
                             "rss_growth_mb": 0}
        left = [f for f in files if f not in done]
        if proc.returncode != 0 and started is None:
            raise RuntimeError(proc.stderr[-2000:])
    c: Counter[str] = Counter()
    for rec in done.values():
        c[rec["outcome"]] += 1
        c["connection attempts"] += rec["connections"]
        c["memory growth over 1 GB"] += rec["rss_growth_mb"] > 1024
    worst = max(rec["rss_growth_mb"] for rec in done.values())
    return {"tried": len(files), **dict(c), "largest memory growth MB": round(worst, 1)}


def links_and_pipes(weights: Path, work: Path, n: int, seed: int) -> dict:
    """Links planted in --save-vis at random depths, and named pipes in the place of random inputs."""
    import cv2
    import numpy as np

    from coco2yolo import cli
    from coco2yolo import inference as predict
    from coco2yolo import label_issues, submission
    from coco2yolo.dataset import convert as conv
    from coco2yolo.evaluation import command as evaluation

    rng = random.Random(f"{seed}-links")
    c: Counter[str] = Counter()
    root = work / "lp"
    images = []
    for i in range(3):
        p = root / "ds" / "train" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((64, 64, 3), 60 * i, np.uint8))
        images.append({"id": i, "file_name": f"train/{i}.jpg", "width": 64, "height": 64})
    gt = {"images": images, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
          "annotations": [{"id": i, "image_id": i, "category_id": i % 2, "bbox": [4, 4, 20, 20], "iscrowd": 0}
                          for i in range(3)]}
    gt_path = root / "ds" / "gt.json"
    gt_path.write_text(json.dumps(gt))
    preds = root / "ds" / "preds.json"
    preds.write_text(json.dumps([{"image_id": i, "category_id": 0, "bbox": [4, 4, 20, 20], "score": 0.9}
                                 for i in range(3)]))
    (root / "ds" / "sub.csv").write_text("PredictionString,image_id\n" + "".join(
        f"0 0.9 1 1 5 5,train/{i}.jpg\n" for i in range(3)))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("blocked")))
    for k in range(n):
        # a link in --save-vis, at the first or second level, to a folder outside
        vis, outside = root / f"vis{k}", root / f"outside{k}"
        outside.mkdir(parents=True)
        depth = rng.choice([1, 2])
        link = vis / "train" if depth == 1 else vis / "train" / "0.jpg"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside, target_is_directory=depth == 1) if depth == 1 else link.symlink_to(outside / "x.jpg")
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.run(predict.main, predict.get_args_parser(),
                           ["--weights", str(weights), "--images", str(gt_path), "--out", str(root / f"p{k}.json"),
                            "--device", "cpu", "--save-vis", str(vis), "--vis-conf", "0"])
        c[f"save-vis link: exit {code}"] += 1
        c["save-vis link: a file written outside"] += bool(list(outside.iterdir()))
        # a named pipe where one input should be
        target = rng.choice(["photo", "gt", "preds", "csv", "weights"])
        fifo_root = root / f"fifo{k}"
        import shutil

        shutil.copytree(root / "ds", fifo_root)
        victim = {"photo": fifo_root / "train" / f"{rng.randrange(3)}.jpg", "gt": fifo_root / "gt.json",
                  "preds": fifo_root / "preds.json", "csv": fifo_root / "sub.csv",
                  "weights": fifo_root / "w.pt"}[target]
        victim.unlink(missing_ok=True)
        os.mkfifo(victim)
        runs = [(evaluation, ["--gt", fifo_root / "gt.json", fifo_root / "preds.json", "--report", fifo_root / "r.html",
                              "--bootstrap", "0"]),
                (label_issues, ["--gt", fifo_root / "gt.json", "--preds", fifo_root / "preds.json", "--out",
                                fifo_root / "i.json", "--report", fifo_root / "i.html"]),
                (conv, [fifo_root / "gt.json", "--out", fifo_root / "o", "--val-fraction", "0.34"]),
                (submission, ["check", fifo_root / "sub.csv", "--images", fifo_root / "gt.json"])]
        if target == "weights":
            runs = [(predict, ["--weights", victim, "--images", fifo_root / "gt.json", "--out", fifo_root / "p.json",
                               "--device", "cpu"])]
        for module, argv in runs:
            err = io.StringIO()
            signal.alarm(60)
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = cli.run(module.main, module.get_args_parser(), [str(a) for a in argv])
                lines = err.getvalue().strip().splitlines()
                ok = code == 0 or (code == 2 and (len(lines) == 1 or module is submission))
                c[f"named pipe as {target}: {'exit ' + str(code) if ok else 'BAD'}"] += 1
            except TimeoutError:
                c[f"named pipe as {target}: BLOCKED"] += 1
            finally:
                signal.alarm(0)
    return dict(sorted(c.items()))


def photos(n: int, seed: int, work: Path) -> dict:
    """Photos whose JSON size disagrees, that carry random EXIF orientations, or declare huge sizes: the
    converter must skip or fit them, and every label must land inside its decoded photo."""
    import cv2
    import numpy as np
    from PIL import Image

    from coco2yolo import cli
    from coco2yolo.dataset import convert as conv

    rng = random.Random(f"{seed}-photos")
    c: Counter[str] = Counter()
    for k in range(n):
        root = work / f"ph{k}"
        (root / "train").mkdir(parents=True)
        images, anns = [], []
        for i in range(4):
            w, h = rng.choice([(64, 48), (48, 64), (80, 80)])
            o = rng.choice([1, 1, 2, 3, 4, 5, 6, 7, 8])
            x1, y1 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
            x2, y2 = x1 + rng.randrange(4, w // 2), y1 + rng.randrange(4, h // 2)
            img = np.zeros((h, w, 3), np.uint8)
            img[y1:y2, x1:x2] = 255
            ex = Image.Exif()
            ex[0x0112] = o
            Image.fromarray(img).save(root / "train" / f"{i}.jpg", "JPEG", exif=ex, quality=98)
            jw, jh = rng.choice([(w, h), (w, h), (h, w), (w * 2, h * 2)])
            images.append({"id": i, "file_name": f"train/{i}.jpg", "width": jw, "height": jh})
            anns.append({"id": i, "image_id": i, "category_id": i % 2, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                         "truth": (x1, y1, x2, y2, w, h, o)})
        if rng.random() < 0.3:  # a decompression bomb among them
            from test_hostile_inputs import _png_header

            _png_header(root / "train" / "bomb.png", rng.choice([20000, 65535]), rng.choice([20000, 65535]))
            images.append({"id": 9, "file_name": "train/bomb.png", "width": 100, "height": 100})
        doc = {"images": images, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
               "annotations": [{k2: v for k2, v in a.items() if k2 != "truth"} for a in anns]}
        (root / "train.json").write_text(json.dumps(doc))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.run(conv.main, conv.get_args_parser(), [str(root / "train.json"), "--out", str(root / "o"),
                                                                "--val-fraction", "0.25", "--clean"])
        c[f"convert: exit {code}"] += 1
        if code != 0:
            continue
        for a in anns:
            x1, y1, x2, y2, w, h, o = a["truth"]
            jw, jh = images[a["image_id"]]["width"], images[a["image_id"]]["height"]
            lbl = next((root / "o" / "labels").rglob(f"{a['image_id']}.txt"))
            decoded = cv2.imread(str(root / "train" / f"{a['image_id']}.jpg"))
            ys, xs = np.where(decoded[..., 0] > 128)
            H, W = decoded.shape[:2]
            cls, xc, yc, bw, bh = (float(v) for v in lbl.read_text().split())
            seen = ((xs.min() + xs.max() + 1) / 2 / W, (ys.min() + ys.max() + 1) / 2 / H)
            stored_frame = (jw, jh) == (w, h) or (jw, jh) not in ((w, h), (h, w))
            if stored_frame or o in (1,):
                c["label on its object (within 3 px)"] += bool(abs(xc - seen[0]) * W <= 3 and abs(yc - seen[1]) * H <= 3)
                c["labels checked"] += 1
            c["label outside [0, 1]"] += not all(0 <= v <= 1 for v in (xc, yc, bw, bh))
        c["bomb skipped"] += "too many pixels" in err.getvalue()
    return dict(sorted(c.items()))


def csv_numbers(n: int, seed: int, work: Path, images_json: Path) -> dict:
    """Submission rows with one token spelled another way (Unicode digits, underscores, odd spaces, words):
    accepted only when every token is a plain decimal number."""
    import re

    from coco2yolo import cli, submission

    rng = random.Random(f"{seed}-csv-grammar")
    odd = ["1_0", "\uff11\uff10", "\u0661\u0660", "1\u00a0", "\u20071", "nan", "inf", "1e5", "-0", "+3", ".5", "5.",
           "1e", "--1", "0x10", "1,5", " 7", "\u200b9"]
    plain = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
    c: Counter[str] = Counter()
    for _ in range(n):
        tokens = ["0", "0.9", "10", "10", "50", "50"]
        i = rng.randrange(6)
        tokens[i] = rng.choice(odd)
        row = " ".join(tokens)
        f = work / "grammar.csv"
        f.write_text(f"PredictionString,image_id\n{row},train/0.jpg\n" + "".join(
            f",train/{k}.jpg\n" for k in range(1, 3)), encoding="utf-8")
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            code = cli.run(submission.main, submission.get_args_parser(), ["check", str(f), "--images", str(images_json)])
        is_plain = all(plain.fullmatch(t) for t in row.split(" ") if t) and row.isascii()
        c[f"{'plain' if is_plain else 'not plain'}: {'accepted' if code == 0 else 'refused'}"] += 1
    return dict(sorted(c.items()))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--child", nargs="+")
    a = p.parse_args()
    out, side, *files = a.child
    _child(files, out, side)
