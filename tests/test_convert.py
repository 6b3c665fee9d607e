import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coco2yolo.dataset import convert as conv
from coco2yolo.dataset.clean import CleanConfig
from coco2yolo.dataset.convert import ConvertOptions, convert
from coco2yolo.errors import UserError
from conftest import RECYCLE, need, run_cli
from helpers import ann, make_coco, read_labels


def _fixture(tmp_path):
    """ids {0, 3, 7}, an empty image, a crowd box, names with spaces and subfolders."""
    images = [(1, "train/0000.jpg", 100, 50), (2, "train/sub dir/my photo.jpg", 80, 80),
              (3, "train/empty.jpg", 60, 60), (4, "train/0003.png", 90, 90)]
    anns = [ann(0, 1, 0, [10, 5, 20, 10]), ann(1, 1, 7, [50, 20, 40, 30]), ann(2, 2, 3, [0, 0, 80, 80]),
            ann(3, 4, 7, [5, 5, 10, 10], iscrowd=1), ann(4, 4, 0, [30, 30, 20, 40])]
    return make_coco(tmp_path / "ds", images, anns, [0, 3, 7])


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_labels_map_ids_and_every_image_gets_a_label_file(tmp_path):
    src = _fixture(tmp_path)
    before = _digest(src)
    out = tmp_path / "out"
    res = convert(src, out, ConvertOptions(val_fraction=0.25, seed=0))
    assert _digest(src) == before
    cats = json.loads((out / "categories.json").read_text())["categories"]
    assert [(c["class_index"], c["category_id"]) for c in cats] == [(0, 0), (1, 3), (2, 7)]
    labels = {p.relative_to(out / "labels").as_posix(): read_labels(p) for p in (out / "labels").rglob("*.txt")}
    assert len(labels) == 4 and sum(res.images.values()) == 4
    by_name = {k.split("/", 1)[1]: v for k, v in labels.items()}
    assert by_name["train/empty.txt"] == []
    assert by_name["train/0000.txt"] == [[0, 0.2, 0.2, 0.2, 0.2], [2, 0.7, 0.7, 0.4, 0.6]]
    assert by_name["train/sub dir/my photo.txt"] == [[1, 0.5, 0.5, 1, 1]]
    assert by_name["train/0003.txt"] == [pytest.approx([0, 40 / 90, 50 / 90, 20 / 90, 40 / 90], abs=1e-6)]  # no crowd
    for split in ("train", "val"):
        for img in (out / "images" / split).rglob("*.*"):
            assert img.is_symlink() and img.resolve().is_file()
            assert (out / "labels" / split / img.relative_to(out / "images" / split)).with_suffix(".txt").exists()
    data_yaml = (out / "data.yaml").read_text()
    assert f"path: {out}" in data_yaml and "2: class7" in data_yaml
    report = json.loads((out / "report.json").read_text())
    assert report["conversion"]["crowd"] == {"policy": "drop", "count": 1}


def test_split_jsons_keep_original_ids_and_resolve_from_their_folder(tmp_path):
    out = tmp_path / "out"
    convert(_fixture(tmp_path), out, ConvertOptions(val_fraction=0.25, seed=0))
    tr, va = (json.loads((out / f"{s}.json").read_text()) for s in ("train", "val"))
    assert sorted(im["id"] for im in tr["images"] + va["images"]) == [1, 2, 3, 4]
    assert sorted(a["id"] for a in tr["annotations"] + va["annotations"]) == [0, 1, 2, 3, 4]  # crowd kept
    for doc in (tr, va):
        for im in doc["images"]:
            assert (out / im["file_name"]).is_file() and im["original_file_name"].startswith("train/")


def test_crowd_keep(tmp_path):
    out = tmp_path / "out"
    convert(_fixture(tmp_path), out, ConvertOptions(val_fraction=0.25, crowd="keep"))
    lines = sum(len(read_labels(p)) for p in (out / "labels").rglob("*.txt"))
    assert lines == 5


def test_rerun_replaces_cleanly_and_never_deletes_a_users_file(tmp_path):
    src, out = _fixture(tmp_path), tmp_path / "out"
    convert(src, out, ConvertOptions(val_fraction=0.25, seed=0))
    first = {p.relative_to(out): p.read_bytes() for p in (out / "labels").rglob("*.txt")}
    (out / "labels" / "train.cache").write_bytes(b"ultralytics' label cache")  # derived: replaced without a word
    (out / "labels" / "notes.txt").write_text("the user's own file\n")
    with pytest.raises(UserError, match=r"holds 1 file\(s\) this tool did not write \(first: labels/notes.txt\)"):
        convert(src, out, ConvertOptions(val_fraction=0.25, seed=0))
    assert (out / "labels" / "notes.txt").read_text() == "the user's own file\n"
    (out / "labels" / "notes.txt").unlink()
    convert(src, out, ConvertOptions(val_fraction=0.25, seed=0))
    again = {p.relative_to(out): p.read_bytes() for p in (out / "labels").rglob("*.txt")}
    assert again == first and not (out / "labels" / "train.cache").exists()
    assert not any(p.name.endswith("-2") or ".part" in p.name for p in tmp_path.iterdir())


def test_out_given_as_a_link_is_written_where_it_points(tmp_path):
    src, real, link = _fixture(tmp_path), tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    for _ in range(2):  # a new folder, then a replacement
        convert(src, link, ConvertOptions(val_fraction=0.25, seed=0))
        assert link.is_symlink() and (real / "data.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="refusing to replace"):
        convert(_fixture(tmp_path), out, ConvertOptions())
    assert (out / "keep.txt").read_text() == "precious"


def test_out_of_image_is_an_error_without_clean_and_clipped_with_it(tmp_path):
    src = make_coco(tmp_path, [(0, "a.jpg", 50, 50), (1, "b.jpg", 50, 50)], [ann(0, 0, 1, [40, 40, 20, 5])], [1])
    with pytest.raises(UserError, match=r"annotations\[0\] \(id 0\).*outside.*--clean"):
        convert(src, tmp_path / "o", ConvertOptions(val_fraction=0.5))
    res = convert(src, tmp_path / "o", ConvertOptions(val_fraction=0.5, clean=CleanConfig()))
    assert res.report["cleaning"]["rules"]["clip"]["count"] == 1
    cleaned = json.loads((tmp_path / "o" / "cleaned.json").read_text())
    assert cleaned["annotations"][0]["bbox"] == [40.0, 40.0, 10.0, 5.0]


def test_image_list_for_a_json_without_annotations(tmp_path):
    src = make_coco(tmp_path, [(5, "test/0000.jpg", 20, 20), (2, "test/0001.jpg", 20, 20)], [], [0, 1],
                    json_name="test.json")
    doc = json.loads(src.read_text())
    del doc["annotations"]
    src.write_text(json.dumps(doc))
    res = convert(src, tmp_path / "t", ConvertOptions())
    assert res.images == {"list": 2}
    lines = (tmp_path / "t" / "images.txt").read_text().splitlines()
    assert lines == [str(tmp_path / "test/0001.jpg"), str(tmp_path / "test/0000.jpg")]  # sorted by id


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 1), st.floats(0.01, 1),
                          st.integers(0, 2)), min_size=1, max_size=6),
       st.integers(16, 2000), st.integers(16, 2000))
def test_property_labels_read_back_to_the_original_boxes(tmp_path_factory, boxes, width, height):
    tmp = tmp_path_factory.mktemp("prop")
    anns = []
    for i, (fx, fy, fw, fh, c) in enumerate(boxes):
        x, y = fx * width, fy * height
        w, h = fw * (width - x), fh * (height - y)
        anns.append(ann(i, 0, [0, 4, 9][c], [x, y, w, h]))
    src = make_coco(tmp, [(0, "a.jpg", width, height), (1, "b.jpg", 16, 16)], anns, [0, 4, 9])
    out = tmp / "o"
    convert(src, out, ConvertOptions(val_fraction=0.5))
    lines = [ln for p in (out / "labels").rglob("a.txt") for ln in read_labels(p)]
    from coco2yolo.boxes import yolo_to_xywh

    got = [(int(ln[0]), yolo_to_xywh(ln[1:], (width, height))[0]) for ln in lines]
    want = {(({0: 0, 4: 1, 9: 2}[a["category_id"]]), *a["bbox"]) for a in anns}  # exact repeats collapse
    assert len(got) == len(want)
    tol = 1e-4 * max(width, height)
    for cls, *box in want:  # each original box has a label line that reads back within tol
        dist = [np.abs(g - np.array(box)).max() if c == cls else np.inf for c, g in got]
        k = int(np.argmin(dist))
        assert dist[k] <= tol, (cls, box, got)
        got.pop(k)


def test_peer_check_equals_ultralytics_convert_coco_on_a_one_based_file(tmp_path):
    from ultralytics.data.converter import convert_coco

    images = [(1, "im1.jpg", 640, 480), (2, "im2.jpg", 333, 517), (3, "im3.jpg", 100, 100)]
    anns = [ann(1, 1, 1, [10.5, 20.25, 100, 50]), ann(2, 1, 3, [0, 0, 640, 480]), ann(3, 2, 2, [1, 2, 3, 4]),
            ann(4, 2, 2, [300.1, 500.2, 32.9, 16.8]), ann(5, 3, 3, [33.333, 66.667, 11.1, 22.2])]
    src = make_coco(tmp_path / "coco", images, anns, [1, 2, 3], json_name="instances_x.json")
    convert_coco(labels_dir=str(tmp_path / "coco"), save_dir=str(tmp_path / "ref"), use_segments=False,
                 cls91to80=False)
    ours = tmp_path / "ours"
    convert(src, ours, ConvertOptions(val_fraction=0.34, seed=0))
    ref = {p.name: p.read_text() for p in (tmp_path / "ref" / "labels").rglob("*.txt")}
    mine = {p.name: p.read_text() for p in (ours / "labels").rglob("*.txt")}
    assert ref and set(ref) == set(mine)
    assert ref == mine


@need(RECYCLE)
def test_real_scale_five_fold_conversion(tmp_path):
    data = json.loads(RECYCLE.read_text())
    import cv2

    one = tmp_path / "one.jpg"
    cv2.imwrite(str(one), np.zeros((1024, 1024, 3), np.uint8))  # the photos are not public: one JPEG of their size, hard-linked
    for im in data["images"]:
        p = tmp_path / "img" / im["file_name"]
        p.parent.mkdir(parents=True, exist_ok=True)
        os.link(one, p)
    before = _digest(RECYCLE)
    shares = []
    for fold in (0, 3):
        res = convert(RECYCLE, tmp_path / f"f{fold}", ConvertOptions(images_root=tmp_path / "img", folds=5, fold=fold,
                                                                     clean=CleanConfig(), seed=0))
        assert sum(res.images.values()) == 4883 and 970 <= res.images["val"] <= 985
        shares.append(res.max_share_deviation_pp)
        val = json.loads((tmp_path / f"f{fold}" / "val.json").read_text())
        assert {a["category_id"] for a in val["annotations"]} == set(range(10))
    assert max(shares) < 2.0
    assert _digest(RECYCLE) == before
    folds = json.loads((tmp_path / "f0" / "split.json").read_text())["fold_of_image"]
    assert folds == json.loads((tmp_path / "f3" / "split.json").read_text())["fold_of_image"]


# --- the command line -----------------------------------------------------------------------------

def _cli(argv, capsys):
    return run_cli(conv.main, conv.get_args_parser(), argv, capsys)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5}], "categories": [{"id": 0, "name": "x"}],'
     ' "annotations": [{"id": 0, "image_id": 1, "category_id": 0, "bbox": [0, 0, 1, NaN]}]}', "finite"),
    ('[1, 2]', "expected a COCO dataset object"),
])
def test_cli_bad_json_is_one_line_and_status_2(tmp_path, capsys, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    code, out, err = _cli([p, "--out", tmp_path / "o"], capsys)
    assert code == 2 and match in err and str(p) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_missing_images_are_counted_and_named(tmp_path, capsys):
    src = _fixture(tmp_path)
    os.remove(tmp_path / "ds" / "train" / "empty.jpg")
    os.remove(tmp_path / "ds" / "train" / "0000.jpg")
    code, _, err = _cli([src, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "2 of 4 images are missing" in err and "train/0000.jpg" in err


def test_cli_unwritable_output(tmp_path, capsys):
    src = _fixture(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        code, _, err = _cli([src, "--out", locked / "o"], capsys)
        assert code == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


def test_cli_wrong_flag_suggests(tmp_path, capsys):
    code, _, err = _cli([_fixture(tmp_path), "--out", tmp_path / "o", "--fold-count", "5"], capsys)
    assert code == 2 and "--fold-count" in err


def test_cli_happy_path_prints_table_and_summary(tmp_path, capsys):
    code, out, err = _cli([_fixture(tmp_path), "--out", tmp_path / "o", "--clean", "--folds", "2", "--fold", "1",
                           "--disable", "aspect"], capsys)
    assert code == 0, err
    assert "cleaning: 5 boxes -> 5" in out and "largest deviation" in out and "data.yaml" in out
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["cleaning"]["config"]["aspect"] is False


def test_interrupted_run_leaves_no_output(tmp_path, monkeypatch):
    src, out = _fixture(tmp_path), tmp_path / "o"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(conv, "_write_yaml", boom)
    with pytest.raises(KeyboardInterrupt):
        convert(src, out, ConvertOptions())
    assert not out.exists() and list(tmp_path.glob(".o*")) == []


def test_copy_mode(tmp_path):
    out = tmp_path / "o"
    convert(_fixture(tmp_path), out, ConvertOptions(copy=True))
    files = [p for p in (out / "images").rglob("*.*")]
    assert files and not any(p.is_symlink() for p in files)
    shutil.rmtree(tmp_path / "ds")
    assert all(p.stat().st_size > 0 for p in files)


def test_cli_output_that_cannot_be_created(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = _cli([_fixture(tmp_path), "--out", tmp_path / "afile" / "o"], capsys)
    assert code == 2 and "afile" in err and len(err.strip().splitlines()) == 1


@settings(max_examples=400, deadline=None)
@given(name=st.text(alphabet="ab./\\_", min_size=1, max_size=12) | st.sampled_from(
    ["train/0001.jpg", "images/a.jpg", "x/images/y.png", "./a.jpg", "a//b.jpg", "/abs/a.jpg", "../a.jpg", "a.",
     ".hidden", "..jpg", "a.b.JPG", "dir/", "a\\b.jpg", "images", "sub/.x.png"]))
def test_string_paths_match_pathlib(name):
    """The converter handles a file_name as a string (no path object a photo); it must name every file as the
    pathlib code it replaced did."""
    from pathlib import PurePosixPath

    p = PurePosixPath(name.replace("\\", "/"))
    old = (PurePosixPath(f"img7_{p.name}") if p.is_absolute() or ".." in p.parts
           else PurePosixPath(*[f"{part}_" if part == "images" else part for part in p.parts]))
    assert conv.dataset_relname(name, 7) == str(old)
    assert conv._suffix(name) == PurePosixPath(name).suffix
    rel = str(old)
    if rel != ".":
        assert conv._stem_key(rel) == str(PurePosixPath(rel).with_suffix("")).lower()
        used = set()
        first, second = conv._unique(rel, 3, used), conv._unique(rel, 4, used)
        assert first == rel and second != rel and conv._stem_key(second) in used


def test_collector_paused_only_while_converting(tmp_path):
    import gc

    from coco2yolo.fileio import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()
    with pytest.raises(UserError):
        convert(tmp_path / "missing.json", tmp_path / "out", ConvertOptions())
    assert gc.isenabled()


def _tree(root):
    """Every entry under root: link targets, file bytes (data.yaml names its own folder: left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_file() and rel != "data.yaml":
            out[rel] = ("file", p.read_bytes())
    return out


def test_links_made_beside_the_labels_give_the_same_folder(tmp_path, monkeypatch):
    src = _fixture(tmp_path)
    trees = []
    for in_thread in (True, False):
        monkeypatch.setattr(conv, "LINKS_IN_THREAD", in_thread)
        out = tmp_path / f"out_{in_thread}"
        convert(src, out, ConvertOptions(val_fraction=0.25, seed=0))
        trees.append(_tree(out))
    assert sum(kind == "link" for kind, _ in trees[0].values()) == 4
    assert trees[0] == trees[1]


def test_a_failing_link_in_the_thread_fails_the_conversion_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    src = _fixture(tmp_path)

    def full(src_path, dst_path):
        raise OSError(errno.ENOSPC, "No space left on device", dst_path)

    monkeypatch.setattr(conv.os, "symlink", full)
    code, _, err = _cli([src, "--out", tmp_path / "o"], capsys)
    assert code == 1 and "the disk is full" in err and len(err.strip().splitlines()) == 1  # the machine's error
    assert not (tmp_path / "o").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o")]
