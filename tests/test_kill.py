"""kill -9 at random moments: the output is absent, old and whole, or new and whole, never half;
the next run cleans up whatever the killed one left beside it."""

from __future__ import annotations

import random
import sys

import pytest

from conftest import ROOT
from killing import leftovers, run_and_kill, timed, tree_digest


@pytest.fixture(scope="module")
def bigger_sample(tmp_path_factory):
    from coco2yolo.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("killsample"), n_train=300, n_test=4, size=32, seed=3)


def test_convert_killed_at_random_moments(bigger_sample, tmp_path):
    out = tmp_path / "out"

    def cmd(seed):
        return [sys.executable, "-m", "coco2yolo", str(bigger_sample), "--out", str(out), "--folds", "3", "--fold",
                "0", "--seed", str(seed)]

    duration = max(timed(cmd(1), cwd=ROOT) for _ in range(2))  # file-system latency varies run to run
    new = tree_digest(out)
    timed(cmd(0), cwd=ROOT)
    old = tree_digest(out)
    assert old != new
    rng = random.Random(0)
    outcomes = {"old": 0, "new": 0}
    delays = [duration * rng.choice([rng.uniform(0.1, 1.3), rng.uniform(0.8, 1.3)]) for _ in range(10)]
    for delay in delays + [duration * 5]:  # the last lets the run finish: the new version must be whole too
        if tree_digest(out) != old:
            timed(cmd(0), cwd=ROOT)
        run_and_kill(cmd(1), delay, cwd=ROOT)
        state = tree_digest(out)
        assert state in (old, new), "a kill left a half-written output"
        outcomes["old" if state == old else "new"] += 1
    assert outcomes["old"] and outcomes["new"], outcomes
    timed(cmd(1), cwd=ROOT)
    assert tree_digest(out) == new and leftovers(out) == []


def test_single_file_output_killed_at_random_moments(tmp_path):
    """evaluate.py --json: absent, or whole (valid JSON with every key), never a truncated file."""
    import json

    from conftest import write_json

    n = 400
    gt = write_json(tmp_path / "gt.json", {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 99, "height": 99} for i in range(n)],
        "categories": [{"id": 0, "name": "a"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 0, "bbox": [1, 1, 30, 30]} for i in range(n)]})
    preds = write_json(tmp_path / "p.json", [{"image_id": i, "category_id": 0, "bbox": [2, 1, 30, 30], "score": 0.5}
                                             for i in range(n)])
    out = tmp_path / "m.json"
    cmd = [sys.executable, str(ROOT / "evaluate.py"), "--gt", str(gt), str(preds), "--json", str(out)]
    duration = timed(cmd)
    whole = json.loads(out.read_text())
    out.unlink()
    rng = random.Random(1)
    for _ in range(6):
        run_and_kill(cmd, duration * rng.choice([rng.uniform(0.1, 1.2), rng.uniform(0.85, 1.1)]))
        if out.exists():
            assert json.loads(out.read_text()) == whole
            out.unlink()
    timed(cmd)
    assert leftovers(out) == []
