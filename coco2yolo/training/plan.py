"""A plan for a time budget: the settings the user left open, chosen from measured throughput before training.

``train_yolo.py --time T`` (and an experiment entry with ``time:``) trains for T; Ultralytics' own ``time=``
fits only the epochs, so a CPU user with 20 minutes and today's 1024 px default gets 3 epochs that never leave
the warm-up. Before the first epoch, for each candidate the user did not fix (image size first, from 256 px up to
the photos' own size; ``freeze 10`` of a pretrained backbone where no unfrozen candidate can converge; the batch
halved where a GPU runs out of memory), a short probe on this device measures the seconds an epoch takes (a few
training steps on the real model at that size, counted inside the budget; see :func:`probe`), and the epochs each
would reach in what is left of the budget follow. The rule (:func:`choose`): **the largest image size that still
reaches the epochs a run needs, up to the size at which the objects are resolved**, unfrozen if it can, where the
epochs a run needs (and the factor from probed to measured epoch time, per image size: see :func:`overhead_for`) are
fitted to this project's own measured runs, kept in ``cfg/epochs_needed.yaml``. The objects are resolved at the
smallest size where at most ``max_small_share`` of the training boxes are small in COCO's sense (under 32 x 32 px at
that size; :func:`resolving_size`): larger sizes are not probed, and the time they would take goes to epochs
(on TrashNet, whose boxes are resolved at 320 px, a 60-minute plan at 512 px scored below 20 minutes at 320 px).
Settings the user gave stay fixed; ``--no-plan`` keeps Ultralytics' meaning (epochs only).

The plan is printed as one block before the first epoch and recorded in the sidecar as ``plan: {candidates:
[...], chosen: {...}, ...}``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from coco2yolo.errors import UserError

SIZES = (256, 320, 416, 512, 640, 768, 1024, 1280)
RULE_FILE = Path(__file__).resolve().parent.parent / "cfg" / "epochs_needed.yaml"
PROBE_STEPS = 5
VAL_SHARE = 1 / 3      # a validation image costs about a third of a training image
STARTUP = 15.0         # seconds from the plan to the first epoch (model build, dataset scan)
PROBE_SHARE = 0.1      # the probes spend at most this share of the budget (the first one always runs)
FREEZE = 10            # a frozen pretrained backbone: YOLOv5u/v8's first 10 layers


@dataclass
class Candidate:
    imgsz: int
    freeze: int
    batch: int
    seconds_per_epoch: float = 0.0
    epochs: int = 0
    probe_seconds: float = 0.0
    note: str = ""
    small_share: float | None = None  # the share of training boxes under small_px x small_px at this size
    seconds_per_image: float = 0.0    # the probe's measurement (before the factor and the image count)


@dataclass
class Plan:
    candidates: list[Candidate]
    chosen: Candidate | None
    why: str
    epochs_needed: int
    budget_seconds: float
    left_seconds: float
    probe_seconds: float
    fixed: list[str]
    train_images: int
    val_images: int
    device: str
    rule: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    _probe: Any = field(default=None, repr=False, compare=False)  # how make_plan measured (seconds per image)

    def record(self) -> dict[str, Any]:
        """The sidecar's ``plan``."""
        return {"candidates": [asdict(c) for c in self.candidates],
                "chosen": asdict(self.chosen) if self.chosen else None, "why": self.why,
                "epochs_needed": self.epochs_needed, "budget_seconds": self.budget_seconds,
                "left_seconds": round(self.left_seconds, 1), "probe_seconds": round(self.probe_seconds, 1),
                "you_gave": self.fixed, "train_images": self.train_images, "val_images": self.val_images,
                "device": self.device, "rule": self.rule, "objects": self.objects}

    def measured(self) -> Any:
        """A ``measure`` for :func:`make_plan` that answers from this plan's probes and probes only what they lack:
        a second plan on the same device (``--search`` that does not search) spends no budget probing again."""
        seen = {(c.imgsz, c.freeze): (c.batch, c.seconds_per_image) for c in self.candidates if c.seconds_per_image}

        def measure(imgsz: int, batch: int, freeze: int) -> float:
            fit, per_image = seen.get((imgsz, freeze), (0, 0.0))
            if per_image and batch > fit:  # the first plan halved it to fit (a GPU's memory): halve again, unprobed
                raise RuntimeError(f"out of memory at batch {batch} (the first plan's probe)")
            return per_image if per_image and batch == fit else self._probe(imgsz, batch, freeze)

        return measure

    def block(self) -> str:
        """The plan as one block of text, printed before the first epoch."""
        from coco2yolo import cli

        head = (f"plan for a {cli.format_hours(self.budget_seconds / 3600)} budget on {self.device} "
                f"({self.train_images} training, {self.val_images} validation images; {len(self.candidates)} probes "
                f"in {self.probe_seconds:.0f} s, counted in the budget; {self.left_seconds / 60:.1f} min left to train):")
        rows = []
        for c in self.candidates:
            mark = "  <- chosen" if c is self.chosen else ""
            cost = (f"{c.seconds_per_epoch:7.1f} s an epoch -> {c.epochs:4d} epochs" if c.seconds_per_epoch
                    else f"not probed ({c.note})")
            small = f"  small boxes {c.small_share:5.1%}" if c.small_share is not None else ""
            rows.append(f"  imgsz {c.imgsz:5d}  freeze {c.freeze:2d}  batch {c.batch:3d}:{small}  {cost}{mark}")
        tail = f"  why: {self.why}"
        if self.fixed:
            tail += f"; kept as you gave: {', '.join(self.fixed)}"
        return "\n".join([head, *rows, tail])


def rule() -> dict[str, Any]:
    """The fitted rule (``cfg/epochs_needed.yaml``): ``epochs_needed``, ``overhead`` and the runs behind them."""
    from coco2yolo.training.config import load_yaml_mapping

    doc = load_yaml_mapping(RULE_FILE, "plan rule")
    if not isinstance(doc.get("epochs_needed"), int) or not isinstance(doc.get("overhead"), (int, float)):
        raise UserError(f"{RULE_FILE}: needs epochs_needed (an integer) and overhead (a number)")
    by_size = doc.get("overhead_by_imgsz") or {}
    if not isinstance(by_size, dict) or not all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 and isinstance(v, (int, float))
            and not isinstance(v, bool) and 0 < v < 100 for k, v in by_size.items()):
        raise UserError(f"{RULE_FILE}: overhead_by_imgsz maps image sizes (positive integers) to positive numbers")
    share, px = doc.get("max_small_share", 0.0), doc.get("small_px", 32)
    if (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1
            or isinstance(px, bool) or not isinstance(px, (int, float)) or not 0 < px <= 4096):
        raise UserError(f"{RULE_FILE}: max_small_share is a share from 0 to 1 and small_px a positive size in pixels")
    return doc


def overhead_for(fitted: dict[str, Any], imgsz: int) -> float:
    """The factor from a probe's projection to a measured epoch at ``imgsz``: linear in the image size between the
    sizes of the fitted runs (``overhead_by_imgsz``), the nearest fitted size's factor outside them, the single
    ``overhead`` where the rule has no sizes. It grows with the size (on the CPU it was fitted on: 0.73 at 320 px,
    1.15 at 640 px): measured epochs cost the same per pixel at every size, while a probe's two-image steps cost
    relatively more at small sizes; the single factor had promised a 60-minute plan 34 epochs at 640 px, where the
    measured 133 s an epoch gives 27."""
    by_size = sorted((int(k), float(v)) for k, v in (fitted.get("overhead_by_imgsz") or {}).items())
    if not by_size:
        return float(fitted["overhead"])
    if imgsz <= by_size[0][0]:
        return by_size[0][1]
    for (s0, v0), (s1, v1) in zip(by_size, by_size[1:]):
        if imgsz <= s1:
            return v0 + (v1 - v0) * (imgsz - s0) / (s1 - s0)
    return by_size[-1][1]


# --- measuring ----------------------------------------------------------------------------------------------

def arch_of(model: str, weights: str | None) -> str | dict[str, Any]:
    """A model yaml to probe: the speed of an architecture does not need its weights."""
    from coco2yolo.checkpoint import read_checkpoint
    from coco2yolo.checkpoint.legacy import target_yaml

    for spec in (weights, model):
        if spec and spec.endswith(".pt") and Path(spec).is_file():
            ck = read_checkpoint(spec)
            return target_yaml(ck.yaml, spec) if ck.kind == "yolov5" else ck.yaml  # type: ignore[return-value]
    if weights and weights.endswith(".pt"):
        return "yolov5nu.yaml"
    return model[:-3] + ".yaml" if model.endswith(".pt") else model


def probe(model: str, weights: str | None, imgsz: int, batch: int, device: str, freeze: int = 0) -> float:
    """Seconds per training image of this model at this size on this device: a few training steps (forward, loss,
    backward, optimizer step; AMP on CUDA; the first ``freeze`` layers frozen) on random images, after one warm-up
    step. On a GPU the whole batch runs (so a batch that does not fit raises CUDA's out-of-memory error); on a CPU
    two images a step (the time per image does not depend on the batch there). The median of the timed steps: with the
    mean of three, one 60-minute plan put 320 px at 50.5 s an epoch, beside 54.3 at 416 px (its runs take 30)."""
    import torch

    from coco2yolo import ultra

    ultra.setup()
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    from coco2yolo.checkpoint.arch import _quiet, check_yaml

    arch = arch_of(model, weights)
    cfg = yaml_model_load(arch) if isinstance(arch, str) and not Path(arch).is_file() else arch
    if isinstance(cfg, str):
        from coco2yolo.training.config import load_yaml_mapping

        cfg = load_yaml_mapping(cfg, "model yaml")
    dev = torch.device("cpu" if device == "cpu" else f"cuda:{(device or '0').split(',')[0]}")
    with _quiet():
        net = DetectionModel(dict(check_yaml(cfg)), nc=10, verbose=False).to(dev)
    net.args = get_cfg()
    net.train()
    for k, m in enumerate(net.model):
        if k < freeze:
            for p in m.parameters():
                p.requires_grad_(False)
    b = max(1, batch if dev.type == "cuda" else min(batch, 2))
    g = torch.Generator().manual_seed(0)
    n = 4 * b
    batch_doc = {"img": torch.rand(b, 3, imgsz, imgsz, generator=g).to(dev),
                 "batch_idx": torch.arange(b).repeat_interleave(4).float().to(dev),
                 "cls": torch.randint(0, 10, (n, 1), generator=g).float().to(dev),
                 "bboxes": (torch.rand(n, 4, generator=g) * 0.4 + 0.3).to(dev)}
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
    amp = dev.type == "cuda"

    def step() -> None:
        with torch.autocast(dev.type, enabled=amp):
            loss, _ = net.loss(batch_doc)
        loss.sum().backward()
        opt.step()
        opt.zero_grad()

    def timed() -> float:
        t0 = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    timed()  # warm-up
    seconds = sorted(timed() for _ in range(PROBE_STEPS))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return seconds[len(seconds) // 2] / b  # the median step: one stalled step does not move it


def _is_oom(err: BaseException) -> bool:
    return "out of memory" in str(err).lower()


# --- the dataset ----------------------------------------------------------------------------------------------

class Counts(NamedTuple):
    """What the plan needs of a dataset: images to train and validate on, the photos' longest side (None: unknown),
    and each training box's area as a share of its photo's longest side squared (empty: unknown)."""
    train: int
    val: int
    longest: int | None
    box_areas: tuple[float, ...] = ()


def box_areas(doc: Any) -> tuple[float, ...]:
    """Each annotation's ``w * h / longest_side**2`` in a COCO dataset (what the photo is resized by: a training size
    ``s`` makes the box ``area * s**2`` pixels); crowd regions (not trained on) and annotations without a usable box
    or image are left out: the values are read as data, whatever the file holds."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e9  # no NaN, inf or overflow

    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        return ()
    longest = {im["id"]: max(im["width"], im["height"]) for im in doc["images"]
               if isinstance(im, dict) and isinstance(im.get("id"), int) and not isinstance(im.get("id"), bool)
               and number(im.get("width")) and number(im.get("height"))}
    out = []
    for a in doc.get("annotations") if isinstance(doc.get("annotations"), list) else []:
        if not isinstance(a, dict) or a.get("iscrowd") or not isinstance(a.get("image_id"), int):
            continue
        box, side = a.get("bbox"), longest.get(a["image_id"])
        if side and isinstance(box, list) and len(box) == 4 and number(box[2]) and number(box[3]):
            out.append(float(box[2]) / side * float(box[3]) / side)
    return tuple(out)


def longest_side(doc: Any) -> int | None:
    """The longest side over a COCO dataset's photos (None when none has a usable size)."""
    sides = [max(im["width"], im["height"]) for im in (doc.get("images") if isinstance(doc, dict) else None) or []
             if isinstance(im, dict) and all(isinstance(im.get(k), (int, float)) and not isinstance(im.get(k), bool)
                                             and 0 < im.get(k) < 1e9 for k in ("width", "height"))]
    return int(max(sides)) if sides else None


def small_share(areas: tuple[float, ...], imgsz: int, small_px: float = 32) -> float | None:
    """The share of boxes smaller than ``small_px`` x ``small_px`` pixels when the photos are trained at ``imgsz``
    (COCO's "small" at 32); None without boxes."""
    if not areas:
        return None
    limit = (small_px / imgsz) ** 2
    return sum(a < limit for a in areas) / len(areas)


def resolving_size(areas: tuple[float, ...], sizes: list[int], max_share: float, small_px: float = 32) -> int | None:
    """The smallest of ``sizes`` at which at most ``max_share`` of the boxes are small; the largest where none is
    (its pixels still help); None without boxes (no limit)."""
    if not areas or not sizes:
        return None
    return next((s for s in sorted(sizes) if (small_share(areas, s, small_px) or 0) <= max_share), max(sizes))


def dataset_counts(data_yaml: Path, data: dict[str, Any]) -> Counts:
    """Training and validation images of a converted dataset, its photos' longest side (from its train.json /
    val.json; None when unknown) and its training boxes' relative areas (from its train.json)."""
    import json

    from coco2yolo.dataset.convert import IMG_SUFFIXES

    root = Path(data.get("path") or data_yaml.parent)
    root = root if root.is_absolute() else data_yaml.parent / root

    def count(rel: Any) -> int:
        if not isinstance(rel, str):
            return 0
        p = root / rel
        if p.is_file():  # a list of image paths
            return sum(1 for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
        return sum(1 for f in p.rglob("*") if f.suffix.lower() in IMG_SUFFIXES) if p.is_dir() else 0

    longest = None
    areas: tuple[float, ...] = ()
    for name in ("train.json", "val.json"):
        f = data_yaml.parent / name
        if f.is_file():
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                side = longest_side(doc)
                if side:
                    longest = max(longest or 0, side)
                if name == "train.json":
                    areas = box_areas(doc)
            except (ValueError, OSError, KeyError, TypeError, AttributeError):
                pass
    return Counts(count(data.get("train")), count(data.get("val")), longest, areas)


# --- the rule -------------------------------------------------------------------------------------------------

def sizes_for(longest: int | None, fixed_imgsz: int | None) -> list[int]:
    """Candidate image sizes: the project's ladder up to the photos' own size (a multiple of 32), or the one given."""
    if fixed_imgsz is not None:
        return [fixed_imgsz]
    top = math.ceil((longest or 1024) / 32) * 32
    sizes = [s for s in SIZES if s <= top]
    if top not in sizes and top <= SIZES[-1]:
        sizes.append(top)
    return sorted(set(sizes)) or [SIZES[0]]


def choose(cands: list[Candidate], epochs_needed: int, resolved_at: int | None = None,
           max_small_share: float | None = None, small_px: float = 32) -> tuple[Candidate | None, str]:
    """The largest image size that reaches ``epochs_needed`` epochs, no larger than ``resolved_at`` (the size at which
    the objects are resolved: :func:`resolving_size`), unfrozen if any does; else the candidate that reaches the most
    epochs (the smallest, frozen where that helps)."""
    measured = [c for c in cands if c.seconds_per_epoch > 0 and (resolved_at is None or c.imgsz <= resolved_at)]
    if not measured:
        return None, "no candidate could be probed: the settings stay as they are"
    for freeze in (0, FREEZE):
        ok = [c for c in measured if c.freeze == freeze and c.epochs >= epochs_needed]
        if ok:
            best = max(ok, key=lambda c: (c.imgsz, c.batch))
            frozen = " (no unfrozen size reaches it: the pretrained backbone frozen)" if freeze else ""
            if resolved_at is not None and best.imgsz == resolved_at and any(
                    c.imgsz > resolved_at for c in cands):
                share = f"{best.small_share:.1%}" if best.small_share is not None else "few"
                return best, (f"the size at which the objects are resolved ({share} of the training boxes under "
                              f"{small_px:g} x {small_px:g} px, at most {max_small_share or 0:.1%} allowed), and it "
                              f"reaches the {epochs_needed} epochs "
                              f"a run needs: the rest of the budget goes to epochs, not pixels (cfg/epochs_needed.yaml)"
                              f"{frozen}")
            return best, (f"the largest image size that reaches {epochs_needed} epochs, the epochs a run needs "
                          f"(cfg/epochs_needed.yaml: fitted to this project's measured runs){frozen}")
    best = max(measured, key=lambda c: (c.epochs, -c.imgsz))
    return best, (f"no candidate reaches the {epochs_needed} epochs a run needs in this budget: the one that reaches "
                  f"the most ({best.epochs}); a larger budget would allow a larger size")


def make_plan(settings: dict[str, Any], given: set[str], counts: tuple[Any, ...], budget_hours: float,
              started: float, device: str, log: Any = None, measure: Any = None) -> Plan:
    """Probe the candidates (smallest first, stopping once a size cannot reach the epochs a run needs) and choose
    (module docstring). ``settings``: model, weights, imgsz, batch, freeze, val; ``given``: the keys the user set
    (they stay fixed); ``counts``: training and validation images, the photos' longest side and the training boxes'
    relative areas (:class:`Counts`; without the areas no size limit); the budget counts
    from ``started``; ``measure(imgsz, batch, freeze)``: seconds per training image (default: :func:`probe`)."""
    import torch

    fitted = rule()
    need = int(fitted["epochs_needed"])
    overhead = float(fitted["overhead"])
    budget = budget_hours * 3600
    n_train, n_val, longest, *rest = counts
    areas: tuple[float, ...] = tuple(rest[0]) if rest else ()
    fixed = sorted(k for k in ("imgsz", "batch", "freeze") if k in given)
    sizes = sizes_for(longest, settings["imgsz"] if "imgsz" in given else None)
    max_share, small_px = fitted.get("max_small_share"), float(fitted.get("small_px", 32))
    resolved_at = (None if "imgsz" in given or max_share is None  # a rule without the share: no limit
                   else resolving_size(areas, sizes, float(max_share), small_px))
    pretrained = bool(settings.get("weights")) or str(settings.get("model", "")).endswith(".pt")
    freezes = ([int(settings.get("freeze") or 0)] if "freeze" in given else [0, FREEZE] if pretrained else [0])
    on_gpu = device != "cpu" and torch.cuda.is_available()
    dev_name = torch.cuda.get_device_name(int((device or "0").split(",")[0])) if on_gpu else "cpu"
    batch0 = settings["batch"] if isinstance(settings["batch"], int) and settings["batch"] > 0 else 16
    val_on = bool(settings.get("val", True))
    run_probe = measure if measure is not None else (
        lambda imgsz, batch, freeze: probe(settings["model"], settings.get("weights"), imgsz, batch,
                                           (device or "0") if on_gpu else "cpu", freeze))
    cands: list[Candidate] = []
    t_plan = time.time()
    for freeze in freezes:
        for imgsz in sizes:
            c = Candidate(imgsz, freeze, batch0, small_share=small_share(areas, imgsz, small_px))
            cands.append(c)
            if resolved_at is not None and imgsz > resolved_at:
                c.note = f"the objects are resolved at {resolved_at} px"
                continue
            if freeze and any(x.freeze == 0 and x.epochs >= need for x in cands):
                c.note = "an unfrozen size reaches the epochs needed"
                continue
            if any(x.freeze == freeze and x.seconds_per_epoch and x.epochs < need for x in cands):
                c.note = "a smaller size already falls short"
                continue
            if any(x.seconds_per_epoch for x in cands) and time.time() - t_plan > PROBE_SHARE * budget:
                c.note = f"the probes' share of the budget ({PROBE_SHARE:.0%}) is spent"
                continue
            t0 = time.time()
            per_image = None
            while True:
                try:
                    per_image = run_probe(imgsz, c.batch, freeze)
                    break
                except RuntimeError as err:
                    if on_gpu and _is_oom(err) and c.batch > 1 and "batch" not in given:
                        c.batch //= 2
                        torch.cuda.empty_cache()
                        continue
                    c.note = "does not fit" if _is_oom(err) else f"cannot probe: {' '.join(str(err).split())[:60]}"
                    break
            c.probe_seconds = round(time.time() - t0, 1)
            if per_image is None:
                continue
            c.seconds_per_image = per_image
            images = n_train + (VAL_SHARE * n_val if val_on else 0)
            c.seconds_per_epoch = round(per_image * overhead_for(fitted, imgsz) * images, 2)
            left = budget - (time.time() - started) - STARTUP
            c.epochs = max(0, int(left / c.seconds_per_epoch)) if c.seconds_per_epoch > 0 else 0
            if log is not None:
                print(f"plan: probed imgsz {imgsz}, freeze {freeze}: {c.seconds_per_epoch:.1f} s an epoch", file=log,
                      flush=True)
    chosen, why = choose(cands, need, resolved_at, max_share, small_px)
    left = budget - (time.time() - started)
    plan = Plan(cands, chosen, why, need, budget, left, time.time() - t_plan, fixed, n_train, n_val, dev_name,
                rule={"file": RULE_FILE.name, "epochs_needed": need, "overhead": overhead,
                      "overhead_by_imgsz": dict(fitted.get("overhead_by_imgsz") or {}),
                      "max_small_share": max_share, "small_px": small_px,
                      "fitted_on": fitted.get("fitted_on", "")},
                objects={"boxes": len(areas), "resolved_at": resolved_at,
                         "small_share_by_imgsz": {s: round(v, 4) for s in sizes
                                                  if (v := small_share(areas, s, small_px)) is not None}})
    plan._probe = run_probe
    return plan


def open_settings(settings: dict[str, Any], given: set[str]) -> list[str]:
    """What a plan would choose: the image size unless given, the frozen backbone unless given (pretrained
    weights only). Nothing open: no plan (the budget then fits the epochs only, as Ultralytics' ``time``)."""
    pretrained = bool(settings.get("weights")) or str(settings.get("model", "")).endswith(".pt")
    return [k for k, is_open in (("imgsz", "imgsz" not in given), ("freeze", pretrained and "freeze" not in given))
            if is_open]


def chosen_settings(plan: Plan) -> dict[str, Any]:
    """The chosen candidate's settings (imgsz, batch, and freeze where it is frozen); {} without a choice."""
    if plan.chosen is None:
        return {}
    out: dict[str, Any] = {"imgsz": plan.chosen.imgsz, "batch": plan.chosen.batch}
    if plan.chosen.freeze:
        out["freeze"] = plan.chosen.freeze
    return out


def print_plan(plan: Plan) -> None:
    print(plan.block(), file=sys.stdout, flush=True)
