"""bench/bench_gpu.py, the GPU throughput benchmark, runs its every step on the CPU at toy size (--dry), so
that it is ready whenever a CUDA GPU is at hand."""

import json
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_benchmark_runs_dry_on_the_cpu(tmp_path):
    from coco2yolo.sample import make_sample

    out, keep = tmp_path / "gpu.json", tmp_path / "keep"
    real = make_sample(tmp_path / "real", n_train=20, n_test=2, size=64, seed=1)  # stands for --plan-data's photos
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--dry", "--out", str(out), "--work",
                           str(tmp_path / "work"), "--plan-data", str(real), "--plan-baseline", "--keep", str(keep)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    r = result["sizes"]["64"]
    for key in ("train_images_per_s", "baseline_train_images_per_s", "infer_images_per_s", "baseline_infer_images_per_s"):
        assert r[key] > 0, key
    assert r["train_ratio_ours_to_ultralytics"] > 0 and result["device"] == "cpu" and result["amp"] is False
    plan = result["plan"]  # the plan of a budget with the image size left open
    assert plan["candidates"] and plan["chosen"]["imgsz"] in [c["imgsz"] for c in plan["candidates"]]
    assert result["plan_data"] == str(real) and result["noplan"]["epochs_done"] >= 1
    for name in ("gpu_planned.pt", "gpu_planned.json", "gpu_noplan.pt", "gpu_noplan.json"):
        assert (keep / name).stat().st_size > 0, name  # the weights come back to be scored on the held-out photos
    assert json.loads((keep / "gpu_noplan.json").read_text())["plan"] is None  # --no-plan: Ultralytics' meaning
