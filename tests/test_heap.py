"""coco2yolo.heap: freed memory stays in the process during a forward pass, and changes no output."""

import contextlib
import json
import platform
import subprocess
import sys

import pytest

from coco2yolo import heap
from coco2yolo import inference as predict
from conftest import run_cli

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# RSS (MB) with a 256 MB block allocated, after freeing it, and (inside heap_kept) after leaving the block
PROBE = r"""
import json, sys
import numpy as np
from coco2yolo.heap import heap_kept

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def cycle():
    a = np.ones(32 * 2**20)  # 256 MB: above glibc's largest mmap threshold
    held = rss()
    del a
    return held, rss()

out = {"plain": cycle()}
with heap_kept() as on:
    out["kept"] = cycle()
    out["on"] = on
out["after"] = rss()
print(json.dumps(out))
"""


@pytest.mark.skipif(not GLIBC, reason="heap_kept only acts on glibc's malloc")
def test_heap_kept_keeps_freed_blocks_and_gives_them_back_after():
    r = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
    (held, freed), (held_k, freed_k) = r["plain"], r["kept"]
    assert r["on"] is True
    assert held - freed > 200            # by default glibc unmaps a 256 MB block when it is freed
    assert held_k - freed_k < 20         # inside the block it stays mapped, ready for the next forward pass
    assert freed_k - r["after"] > 200    # and leaving the block hands it back


NESTED = r"""
import json
import numpy as np
from coco2yolo.heap import heap_kept

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

with heap_kept() as outer:
    with heap_kept() as inner:
        pass
    a = np.ones(32 * 2**20)
    held = rss()
    del a
    kept_after_inner = held - rss() < 20   # the inner block's end did not switch the outer one off
print(json.dumps({"outer": outer, "inner": inner, "kept": kept_after_inner}))
"""


@pytest.mark.skipif(not GLIBC, reason="heap_kept only acts on glibc's malloc")
def test_nested_blocks_keep_the_heap_until_the_last_ends():
    r = json.loads(subprocess.run([sys.executable, "-c", NESTED], capture_output=True, text=True, check=True).stdout)
    assert r == {"outer": True, "inner": True, "kept": True}


def test_heap_kept_can_be_switched_off():
    with heap.heap_kept(enabled=False) as on:
        assert on is False


def test_infer_results_identical_with_and_without_the_kept_heap(tiny_weights, sample, tmp_path, capsys, monkeypatch):
    """At 640 px a batch's activations exceed glibc's mmap threshold, so both heap policies are exercised."""
    entered = []
    real = predict.heap_kept

    @contextlib.contextmanager
    def spy():
        with real() as on:
            entered.append(on)
            yield on

    outs = []
    for policy in (spy, lambda: contextlib.nullcontext(False)):
        monkeypatch.setattr(predict, "heap_kept", policy)
        out = tmp_path / f"preds{len(outs)}.json"
        code, _, err = run_cli(predict.main, predict.get_args_parser(),
                               ["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out", out,
                                "--device", "cpu", "--imgsz", "640"], capsys)
        assert code == 0, err
        outs.append(out.read_bytes())
    assert entered == [GLIBC]
    assert len(json.loads(outs[0])) > 0 and outs[0] == outs[1]
