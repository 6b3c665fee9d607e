"""Boxes in the frame that training and prediction see: the photo as decoded, its EXIF orientation applied.

OpenCV (and so Ultralytics, for training and prediction) decodes a JPEG that carries an EXIF
orientation turned or mirrored. A COCO file made on the stored pixels then describes boxes that are not
where the model sees the objects, and a file whose ``width``/``height`` disagree with the photo
normalises every box by the wrong size. :func:`fit_to_photos` reads what the header-only photo check
(:func:`coco2yolo.images.probe`) found and, per image:

- EXIF orientation 2-8 and the JSON's size equal to the stored size: the boxes (and polygons) are turned
  with the photo and the size becomes the decoded size (``orientation`` in the report);
- the JSON's size equal to the decoded size of a turned photo: already in the decoded frame, kept;
- a size that matches neither: the photo's own size replaces it (``size`` in the report); boxes that
  now leave the image are then clipped by ``--clean`` or refused, like any other.

``--strict`` refuses instead, naming the first image.
"""

from __future__ import annotations

from typing import Any

from coco2yolo.errors import UserError
from coco2yolo.images import PhotoInfo


def turn_xyxy(x1: float, y1: float, x2: float, y2: float, w: float, h: float, o: int
              ) -> tuple[float, float, float, float]:
    """A box in stored pixels (image ``w`` x ``h``) as it lands in the photo decoded with EXIF orientation ``o``."""
    if o == 2:
        return w - x2, y1, w - x1, y2
    if o == 3:
        return w - x2, h - y2, w - x1, h - y1
    if o == 4:
        return x1, h - y2, x2, h - y1
    if o == 5:
        return y1, x1, y2, x2
    if o == 6:
        return h - y2, x1, h - y1, x2
    if o == 7:
        return h - y2, w - x2, h - y1, w - x1
    if o == 8:
        return y1, w - x2, y2, w - x1
    return x1, y1, x2, y2


def turn_point(x: float, y: float, w: float, h: float, o: int) -> tuple[float, float]:
    x1, y1, _, _ = turn_xyxy(x, y, x, y, w, h, o)
    return x1, y1


def _turn_annotation(a: dict[str, Any], w: int, h: int, o: int) -> dict[str, Any]:
    x, y, bw, bh = a["bbox"]
    x1, y1, x2, y2 = turn_xyxy(x, y, x + bw, y + bh, w, h, o)
    out = {**a, "bbox": [x1, y1, x2 - x1, y2 - y1]}
    seg = a.get("segmentation")
    if isinstance(seg, list) and all(isinstance(p, list) for p in seg):
        out["segmentation"] = [[c for k in range(0, len(p) - 1, 2) for c in turn_point(p[k], p[k + 1], w, h, o)]
                               for p in seg]
    return out


def fit_to_photos(data: dict[str, Any], infos: dict[int, PhotoInfo], strict: bool, source: str
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` with every box in the decoded photo's frame (see the module docstring), and a report of
    what changed; UserError with ``strict`` on the first image that needs a change."""
    turned: dict[int, tuple[int, int, int]] = {}   # image id -> stored (w, h), orientation
    resized: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
    already = 0
    images = []
    for im in data["images"]:
        info = infos.get(im["id"])
        shown = info.shown_size if info is not None else None
        if shown is None:
            images.append(im)
            continue
        stored, size, o = (info.width, info.height), (im["width"], im["height"]), info.orientation
        if size == stored and o == 1:
            images.append(im)
            continue
        if strict:
            why = (f"its EXIF orientation is {o} (OpenCV and Ultralytics decode it turned, {shown[0]}x{shown[1]})"
                   if o != 1 else f"the photo is {stored[0]}x{stored[1]}")
            raise UserError(f"{source}: image {im['id']} ({im['file_name']}): the JSON says {size[0]}x{size[1]} but "
                            f"{why}; without --strict its boxes are fitted to the photo, counted in the report")
        if o != 1 and size == stored:
            turned[im["id"]] = (*stored, o)
        elif o != 1 and size == shown:
            already += 1
            images.append(im)
            continue
        elif o != 1:
            turned[im["id"]] = (*stored, o)
            resized.append((im["file_name"], size, stored))
        else:
            resized.append((im["file_name"], size, stored))
        images.append({**im, "width": shown[0], "height": shown[1]})
    if not turned and not resized:
        return data, {}
    anns = [_turn_annotation(a, *turned[a["image_id"]]) if a["image_id"] in turned else a
            for a in data["annotations"]]
    report = {"orientation": {"count": len(turned), "policy": "boxes turned with the EXIF orientation",
                              "images": [im["file_name"] for im in data["images"] if im["id"] in turned][:1000]},
              "size": {"count": len(resized), "policy": "the photo's own width and height used",
                       "images": [{"file_name": n, "json": list(j), "photo": list(p)} for n, j, p in resized[:1000]]},
              "already_oriented": already}
    return {**data, "images": images, "annotations": anns}, report


def summary_line(report: dict[str, Any], names_in: str | None = None) -> str:
    """The one warning line for photos whose boxes were fitted; ``names_in``: where every name is listed."""
    parts = []
    if report["orientation"]["count"]:
        first = report["orientation"]["images"][0]
        parts.append(f"{report['orientation']['count']} photos carry an EXIF rotation or mirror, so their boxes were "
                     f"turned with them (OpenCV and Ultralytics decode them turned; first: {first})")
    if report["size"]["count"]:
        r = report["size"]["images"][0]
        parts.append(f"{report['size']['count']} photos are not the size their JSON says, so their own size was used "
                     f"(first: {r['file_name']}: JSON {r['json'][0]}x{r['json'][1]}, photo {r['photo'][0]}x{r['photo'][1]})")
    return ("warning: " + "; ".join(parts) + (f"; every name in {names_in}" if names_in else "")
            + "; --strict makes this an error")
