"""infer.py's NMS run class by class (inference.nms_in_groups): the same kept boxes, in the same order,
as torchvision's one call and as Ultralytics' non_max_suppression."""

import pytest
import torch
import torchvision
from torchvision.ops import boxes as tv

from coco2yolo import inference as predict
from coco2yolo import ultra


def _boxes(n, nc, gen, stride=predict.GROUP_STRIDE, ties=True):
    xy = torch.rand(n, 2, generator=gen) * 1024
    wh = torch.rand(n, 2, generator=gen) * 300 + 1
    cls = torch.randint(0, nc, (n, 1), generator=gen).float()
    scores = torch.rand(n, generator=gen)
    if ties:  # a few hundred distinct values: many equal scores, which only a stable order keeps apart
        scores = torch.round(scores * 300) / 300
    return torch.cat([xy, xy + wh], 1) + cls * stride, scores


@pytest.mark.parametrize("seed", range(6))
def test_grouped_nms_equals_one_call(seed, monkeypatch):
    gen = torch.Generator().manual_seed(seed)
    n, nc = [(3000, 10), (2000, 3), (600, 7), (5000, 2), (1200, 1), (4000, 8)][seed]
    boxes, scores = _boxes(n, nc, gen, ties=seed % 2 == 0)
    calls = []
    one = tv.nms
    monkeypatch.setattr(tv, "nms", lambda b, s, t: calls.append(len(b)) or one(b, s, t))
    for thr in (0.3, 0.7):
        calls.clear()
        assert torch.equal(predict.nms_in_groups(boxes, scores, thr), one(boxes, scores, thr))
        assert len(calls) == len(torch.unique(boxes[:, 0] // predict.GROUP_STRIDE))  # one call per class


def test_groups_that_overlap_or_odd_values_fall_back_to_one_call(monkeypatch):
    gen = torch.Generator().manual_seed(7)
    one = tv.nms
    calls = []
    monkeypatch.setattr(tv, "nms", lambda b, s, t: calls.append(len(b)) or one(b, s, t))
    boxes, scores = _boxes(2000, 4, gen)
    wide = boxes.clone()
    wide[0, 2] += 2 * predict.GROUP_STRIDE  # one box reaching into the next classes' range
    odd = boxes.clone()
    odd[5, 1] = float("nan")
    few_b, few_s = boxes[:100], scores[:100]
    for b, s in ((wide, scores), (odd, scores), (few_b, few_s)):
        calls.clear()
        assert torch.equal(predict.nms_in_groups(b, s, 0.6), one(b, s, 0.6))
        assert calls == [len(b)]


@pytest.mark.parametrize("multi_label", [True, False])
def test_ultralytics_nms_gives_the_same_detections_with_grouped_calls(multi_label, monkeypatch):
    """Raw model output (batch, 4 + classes, anchors) through Ultralytics' own non_max_suppression at
    infer.py's settings, with torchvision's one call and with the grouped calls."""
    ultra.setup()
    from ultralytics.utils import nms as ultra_nms

    gen = torch.Generator().manual_seed(3)
    bs, nc, anchors = 3, 10, 8400
    xywh = torch.cat([torch.rand(bs, 2, anchors, generator=gen) * 1024,
                      torch.rand(bs, 2, anchors, generator=gen) * 200 + 2], 1)
    cls = torch.round(torch.rand(bs, nc, anchors, generator=gen) ** 4 * 1000) / 1000  # many near 0, ties
    pred = torch.cat([xywh, cls], 1)
    kw = dict(conf_thres=0.001, iou_thres=0.7, max_det=300, multi_label=multi_label, max_time_img=float("inf"))
    want = ultra_nms.non_max_suppression(pred.clone(), **kw)
    monkeypatch.setattr(torchvision.ops, "nms", predict.nms_in_groups)
    got = ultra_nms.non_max_suppression(pred.clone(), **kw)
    assert len(got) == bs
    for w, g in zip(want, got):
        assert len(w) == 300 and torch.equal(w, g)


def test_infer_lifts_the_nms_time_limit_that_drops_images(monkeypatch):
    """Ultralytics' NMS stops after 2 s + 0.05 s an image and leaves the batch's other images empty;
    infer.py's predictor calls it without the limit."""
    ultra.setup()
    from ultralytics.utils import nms as ultra_nms

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return [torch.zeros((0, 6))]

    monkeypatch.setattr(ultra_nms, "non_max_suppression", spy)
    pred = torch.rand(1, 14, 50)
    for multi_label in (True, False):
        seen.clear()

        class Stub(predict.fast_predictor(multi_label)):
            def __init__(self):
                pass

            def construct_results(self, preds, img, orig_imgs, **kwargs):
                return preds

        stub = Stub()
        stub.args = type("A", (), dict(conf=0.001, iou=0.7, classes=None, agnostic_nms=False, max_det=300,
                                       task="detect"))()
        stub.model = type("M", (), dict(names={i: str(i) for i in range(10)}, end2end=False))()
        stub.postprocess(pred, torch.zeros(1, 3, 32, 32), [])
        assert seen["max_time_img"] == float("inf") and seen["multi_label"] is multi_label
    assert ultra_nms.non_max_suppression is spy  # restored after each call
    # and the limit does cut batches short: on a clock where every image's NMS takes 10 s, the batch's
    # later images come back empty; lifted, every image keeps its boxes
    monkeypatch.undo()
    gen = torch.Generator().manual_seed(3)
    batch = torch.cat([torch.rand(4, 2, 500, generator=gen) * 1024, torch.rand(4, 2, 500, generator=gen) * 200 + 2,
                       torch.rand(4, 10, 500, generator=gen)], 1)
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(ultra_nms.time, "time", lambda: next(ticks))
    limited = ultra_nms.non_max_suppression(batch, 0.001, 0.7, multi_label=True, max_det=300)
    lifted = ultra_nms.non_max_suppression(batch, 0.001, 0.7, multi_label=True, max_det=300, max_time_img=float("inf"))
    assert [len(d) > 0 for d in limited] == [True, False, False, False]
    assert all(len(d) == 300 for d in lifted)
