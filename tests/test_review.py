"""Issue 25: label issues carry their fix; ``coco2yolo review`` (a page where a person decides, tested in headless
Chromium) and ``coco2yolo review apply`` (the fixed COCO file, a changes file, bad decisions refused in one line)."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from coco2yolo import label_issues as li
from coco2yolo.review import command as review
from conftest import run_cli, write_json
from helpers import one_line, unavailable
from test_label_issues import _planted


@pytest.fixture
def planted(tmp_path, capsys):
    gt, preds, ids = _planted(tmp_path)
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out",
                                                            tmp_path / "issues.json"], capsys)
    assert code == 0, err
    return gt, tmp_path / "issues.json", ids


def _apply(capsys, *argv):
    return run_cli(review.main, review.get_args_parser(), ["apply", *argv], capsys)


def _by_id(doc):
    return {a["id"]: a for a in doc["annotations"]}


def test_accepted_fixes_are_applied_once_and_the_input_is_untouched(planted, tmp_path, capsys):
    gt, issues_path, ids = planted
    issues = json.loads(issues_path.read_text())
    top4 = {i["kind"]: i for i in issues[:4]}
    assert set(top4) == {"wrong_class", "bad_box", "no_object", "missing"}
    before = gt.read_bytes()
    code, out, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--accept-top", "4", "--out", tmp_path / "fixed.json")
    assert code == 0, err
    assert "4 changes (1 classes, 1 boxes, 1 removed, 1 added)" in out
    assert gt.read_bytes() == before
    src, fixed = json.loads(before), json.loads((tmp_path / "fixed.json").read_text())
    anns = _by_id(fixed)
    assert anns[ids["wrong_class"]]["category_id"] == top4["wrong_class"]["suggested_category_id"]
    assert anns[ids["wrong_class"]]["bbox"] == _by_id(src)[ids["wrong_class"]]["bbox"]
    assert anns[ids["bad_box"]]["bbox"] == top4["bad_box"]["suggested_bbox"]
    assert anns[ids["bad_box"]]["area"] == pytest.approx(61 * 61)
    assert ids["no_object"] not in anns
    new = [a for a in fixed["annotations"] if a["id"] not in _by_id(src)]
    assert len(new) == 1 and new[0]["id"] == max(_by_id(src)) + 1 and new[0]["image_id"] == top4["missing"]["image_id"]
    assert new[0]["bbox"] == top4["missing"]["suggested_bbox"] and new[0]["category_id"] == 1
    assert len(fixed["annotations"]) == len(src["annotations"])  # one removed, one added
    assert fixed["images"] == src["images"] and fixed["categories"] == src["categories"]
    rows = list(csv.DictReader((tmp_path / "fixed.changes.csv").open()))
    assert [r["action"] for r in rows] == ["class", "box", "removed", "added"]
    assert {r["issue_id"] for r in rows} == {i["id"] for i in issues[:4]}
    assert rows[1]["bbox_before"] == "50 50 60 60" and rows[1]["bbox_after"] == "21 21 61 61"
    # the same decisions on the fixed file: nothing changes
    code, out, err = _apply(capsys, "--gt", tmp_path / "fixed.json", "--issues", issues_path, "--accept-top", "4",
                            "--out", tmp_path / "again.json")
    assert code == 0, err
    assert "0 changes" in out and "4 already applied" in out
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "fixed.json").read_bytes()


def test_decisions_with_edits_rejects_and_scores(planted, tmp_path, capsys):
    gt, issues_path, ids = planted
    issues = {i["kind"]: i for i in json.loads(issues_path.read_text())[:4]}
    decisions = write_json(tmp_path / "d.json", [
        {"id": issues["wrong_class"]["id"], "decision": "accept", "category_id": 0},                   # another class
        {"id": issues["bad_box"]["id"], "decision": "reject"},
        {"id": issues["no_object"]["id"], "decision": "accept", "bbox": [140, 140, 40, 40]},           # kept, moved
        {"id": issues["missing"]["id"], "decision": "accept", "category_id": 2, "bbox": [150, 20, 30, 30]}])
    code, out, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--decisions", decisions, "--out",
                            tmp_path / "f.json")
    assert code == 0, err
    assert "1 rejected" in out
    anns = _by_id(json.loads((tmp_path / "f.json").read_text()))
    assert anns[ids["wrong_class"]]["category_id"] == 0
    assert anns[ids["bad_box"]]["bbox"] == [50.0, 50.0, 60.0, 60.0]  # rejected: as it was
    assert anns[ids["no_object"]]["bbox"] == [140, 140, 40, 40] and anns[ids["no_object"]]["category_id"] == 1
    added = max(anns.values(), key=lambda a: a["id"])
    assert added["category_id"] == 2 and added["bbox"] == [150, 20, 30, 30]
    code, out, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--accept-score", "0.95", "--out",
                            tmp_path / "s.json")
    assert code == 0, err
    assert "from 2 accepted" in out  # wrong_class and bad_box score 0.99; the rest less


@pytest.mark.parametrize("records, match", [
    ([{"id": "wrong_class/12345", "decision": "accept"}], "is not an issue of the issues file"),
    ([{"id": "ISSUE", "decision": "maybe"}], "'decision' must be accept or reject"),
    ([{"id": "ISSUE", "decision": "accept", "colour": "red"}], "unknown key 'colour'"),
    ([{"id": "ISSUE", "decision": "accept", "category_id": 7}], "category_id 7 is not a category"),
    ([{"id": "ISSUE", "decision": "accept", "bbox": [190, 190, 50, 50]}], "leaves its 200x200 photo"),
    ([{"id": "ISSUE", "decision": "accept", "bbox": [1, 1, 0, 5]}], "w, h > 0"),
    ([{"id": "ISSUE", "decision": "reject", "category_id": 0}], "a rejected issue takes no category_id"),
    ([{"id": "ISSUE", "decision": "accept"}, {"id": "ISSUE", "decision": "reject"}], "decided twice"),
    ({"id": "ISSUE"}, "expected a JSON list"),
    ("[{", "not valid JSON"),
    ("[" * 100000, "nest"),
])
def test_bad_decisions_are_one_line_and_write_nothing(planted, tmp_path, capsys, records, match):
    gt, issues_path, _ = planted
    first = json.loads(issues_path.read_text())[0]["id"]
    path = tmp_path / "d.json"
    path.write_text(records if isinstance(records, str) else json.dumps(records).replace("ISSUE", first))
    before = gt.read_bytes(), issues_path.read_bytes(), path.read_bytes()
    code, _, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--decisions", path, "--out", tmp_path / "f.json")
    one_line(code, err, match)
    assert not (tmp_path / "f.json").exists() and not (tmp_path / "f.changes.csv").exists()
    assert (gt.read_bytes(), issues_path.read_bytes(), path.read_bytes()) == before


@pytest.mark.parametrize("change, match", [("moved", "the dataset changed since"), ("gone", "is not in"),
                                           ("other image", "is on image")])
def test_an_issue_that_no_longer_matches_is_one_line(planted, tmp_path, capsys, change, match):
    gt, issues_path, ids = planted
    doc = json.loads(gt.read_text())
    target = ids["bad_box"]
    if change == "moved":
        next(a for a in doc["annotations"] if a["id"] == target)["bbox"] = [1, 1, 5, 5]
    elif change == "gone":
        doc["annotations"] = [a for a in doc["annotations"] if a["id"] != target]
    else:
        next(a for a in doc["annotations"] if a["id"] == target)["image_id"] = 0
    edited = write_json(tmp_path / "edited.json", doc)
    code, _, err = _apply(capsys, "--gt", edited, "--issues", issues_path, "--accept-top", "4", "--out",
                          tmp_path / "f.json")
    one_line(code, err, match)
    assert not (tmp_path / "f.json").exists()


def test_the_output_may_not_be_an_input(planted, capsys):
    gt, issues_path, _ = planted
    code, _, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--accept-top", "1", "--out", gt)
    one_line(code, err)


def test_the_page_escapes_names_from_the_users_files(tmp_path, capsys):
    """Class names and file names are the user's: embedded as escaped JSON, set as text only."""
    import cv2
    import numpy as np

    evil_name = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    evil_file = 'a"><img src=x onerror=alert(1)>.jpg'
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / evil_file), np.full((64, 64, 3), 90, np.uint8))
    gt = write_json(tmp_path / "gt.json", {
        "images": [{"id": 1, "file_name": f"train/{evil_file}", "width": 64, "height": 64}],
        "categories": [{"id": 0, "name": evil_name}, {"id": 1, "name": "plain"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "iscrowd": 0}]})
    issues = write_json(tmp_path / "issues.json", [{"kind": "wrong_class", "score": 0.9, "image_id": 1,
                                                    "annotation_id": 1, "bbox": [10, 10, 20, 20], "category_id": 0,
                                                    "suggested_category_id": 1}])
    code, _, err = run_cli(review.main, review.get_args_parser(), [issues, "--gt", gt, "--out", tmp_path / "p.html"],
                           capsys)
    assert code == 0, err
    page = (tmp_path / "p.html").read_text()
    assert "<script>window.pwned" not in page and "<img src=x" not in page and page.count("</script>") == 3
    browser = _browser(tmp_path)
    try:
        browser.get((tmp_path / "p.html").as_uri())
        time.sleep(0.3)
        assert browser.execute_script("return window.pwned") is None
        assert evil_name in browser.find_element("id", "info").text
        assert evil_file in browser.find_element("id", "info").text
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        browser.quit()


# --- in a real browser --------------------------------------------------------------------------

def _browser(downloads: Path):
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver:
        unavailable("headless Chromium is not installed here (.ci/run installs Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000",
                "--disable-background-networking", "--no-first-run", f"--user-data-dir={downloads / 'profile'}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return browser


def _wait_for(path: Path, seconds: float = 10) -> None:
    end = time.time() + seconds
    while time.time() < end and not (path.exists() and path.stat().st_size > 0):
        time.sleep(0.1)
    assert path.exists(), f"{path} was not downloaded"


def test_deciding_five_issues_with_the_keys_then_apply(planted, tmp_path, capsys):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    gt, issues_path, ids = planted
    issues = json.loads(issues_path.read_text())
    code, _, err = run_cli(review.main, review.get_args_parser(), [issues_path, "--gt", gt, "--out",
                                                                   tmp_path / "page.html"], capsys)
    assert code == 0, err
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)
    try:
        browser.get((tmp_path / "page.html").as_uri())
        body = browser.find_element("tag name", "body")
        progress = lambda: browser.find_element("id", "progress").text  # noqa: E731
        assert progress() == f"0 of {len(issues)} decided"
        body.send_keys("a")                              # 1 wrong_class: accept
        body.send_keys("r")                              # 2 bad_box: reject
        body.send_keys("z")                              # undo: back to 2
        assert browser.find_element("tag name", "body").get_attribute("data-current") == "1"
        body.send_keys("a")                              # 2 bad_box: accept after all
        body.send_keys("e")                              # 3 no_object: edit its class instead of removing it
        Select(browser.find_element("id", "cls")).select_by_value("2")
        browser.find_element("id", "cls").send_keys("\ue007")  # Enter keeps the edit
        body.send_keys("e")                              # 4 missing: edit its box by drawing it
        canvas = browser.find_element("id", "view")
        ActionChains(browser).move_to_element_with_offset(canvas, -200, -150).click_and_hold() \
            .move_by_offset(120, 100).release().perform()
        browser.find_element("id", "cls").send_keys("\ue007")
        body.send_keys("\ue014")                         # arrow right: skip issue 5
        body.send_keys("r")                              # 6: reject
        assert progress() == f"5 of {len(issues)} decided"
        browser.refresh()                                # kept in the browser while it is open
        assert progress() == f"5 of {len(issues)} decided"
        assert "resumed 5 decisions" in browser.find_element("id", "msg").text
        browser.find_element("id", "b-save").click()
        _wait_for(downloads / "decisions.json")
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        browser.quit()
    records = json.loads((downloads / "decisions.json").read_text())
    assert [r["id"] for r in records] == [issues[k]["id"] for k in (0, 1, 2, 3, 5)]
    assert [r["decision"] for r in records] == ["accept", "accept", "accept", "accept", "reject"]
    assert records[2]["category_id"] == 2 and "bbox" in records[3]
    code, out, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--decisions", downloads / "decisions.json",
                            "--out", tmp_path / "fixed.json")
    assert code == 0, err
    anns = _by_id(json.loads((tmp_path / "fixed.json").read_text()))
    assert anns[ids["wrong_class"]]["category_id"] == issues[0]["suggested_category_id"]
    assert anns[ids["bad_box"]]["bbox"] == issues[1]["suggested_bbox"]
    assert anns[ids["no_object"]]["category_id"] == 2  # edited: kept with another class
    drawn = max(anns.values(), key=lambda a: a["id"])
    assert drawn["image_id"] == issues[3]["image_id"] and drawn["bbox"] != issues[3]["suggested_bbox"]
    assert 0 < drawn["bbox"][2] < 200 and 0 < drawn["bbox"][3] < 200


def test_fiftyone_review_round_trip_tags_become_decisions(planted, tmp_path, capsys):
    """The issues as tags in a real FiftyOne dataset; accept/reject set on their boxes as the App does
    (label tags); ``review from-fiftyone`` reads them back as a decisions file that ``review apply`` takes."""
    from coco2yolo import browse, ultra

    ultra.fiftyone_offline()
    try:
        import fiftyone as fo
    except ImportError:
        unavailable("FiftyOne is not installed here (the test extra installs it)")
    from fiftyone import ViewField as F

    gt, issues_path, ids = planted
    issues = json.loads(issues_path.read_text())
    code, _, err = run_cli(browse.main, browse.get_args_parser(), ["--gt", gt, "--issues", issues_path, "--name",
                                                                   "review_rt", "--overwrite"], capsys)
    assert code == 0, err
    ds = fo.load_dataset("review_rt")
    for issue, tag in ((issues[0], "accept"), (issues[1], "reject"), (issues[3], "accept")):
        field = "label_issues" if issue["kind"] == "missing" else "ground_truth"
        view = ds.filter_labels(field, F("issue_id") == issue["id"])
        assert view.count(f"{field}.detections") == 1
        view.tag_labels(tag, label_fields=field)
    code, out, err = run_cli(review.main, review.get_args_parser(), ["from-fiftyone", "review_rt", "--out",
                                                                     tmp_path / "d.json"], capsys)
    assert code == 0, err
    assert "3 decisions (2 accept, 1 reject)" in out
    records = json.loads((tmp_path / "d.json").read_text())
    assert {r["id"]: r["decision"] for r in records} == {issues[0]["id"]: "accept", issues[1]["id"]: "reject",
                                                          issues[3]["id"]: "accept"}
    code, out, err = _apply(capsys, "--gt", gt, "--issues", issues_path, "--decisions", tmp_path / "d.json", "--out",
                            tmp_path / "fixed.json")
    assert code == 0, err
    anns = _by_id(json.loads((tmp_path / "fixed.json").read_text()))
    assert anns[ids["wrong_class"]]["category_id"] == issues[0]["suggested_category_id"]
    assert anns[ids["bad_box"]]["bbox"] == [50.0, 50.0, 60.0, 60.0]  # rejected
    code, _, err = run_cli(review.main, review.get_args_parser(), ["from-fiftyone", "no_such_dataset", "--out",
                                                                   tmp_path / "x.json"], capsys)
    one_line(code, err, "no FiftyOne dataset 'no_such_dataset'")


def test_a_missing_box_already_there_is_not_added_again_even_after_earlier_fixes_in_the_same_run():
    """The check for a missing box already in the dataset sees the run's own changes: an annotation whose class an
    earlier decision changed, and a box an earlier decision added."""
    from coco2yolo.review.apply import apply_decisions
    from coco2yolo.review.decisions import Decision

    doc = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
           "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "area": 400,
                            "iscrowd": 0}]}
    issues = [{"id": "wrong_class/5", "kind": "wrong_class", "annotation_id": 5, "image_id": 1, "category_id": 0,
               "bbox": [10, 10, 20, 20], "suggested_category_id": 1, "suggested_bbox": None},
              {"id": "missing/1/a", "kind": "missing", "annotation_id": None, "image_id": 1, "category_id": 1,
               "bbox": [10, 10, 20, 20], "suggested_category_id": 1, "suggested_bbox": [10, 10, 20, 20]},
              {"id": "missing/1/b", "kind": "missing", "annotation_id": None, "image_id": 1, "category_id": 0,
               "bbox": [50, 50, 20, 20], "suggested_category_id": 0, "suggested_bbox": [50, 50, 20, 20]},
              {"id": "missing/1/c", "kind": "missing", "annotation_id": None, "image_id": 1, "category_id": 0,
               "bbox": [50, 50, 20, 20], "suggested_category_id": 0, "suggested_bbox": [50, 50, 20, 20]},
              {"id": "missing/1/d", "kind": "missing", "annotation_id": None, "image_id": 1, "category_id": 0,
               "bbox": [10, 10, 20, 20], "suggested_category_id": 0, "suggested_bbox": [10, 10, 20, 20]}]
    fixed, changes, counts = apply_decisions(doc, issues, [Decision(r["id"], "accept") for r in issues], "gt.json")
    assert [c["action"] for c in changes] == ["class", "added", "added"]  # b: added once; d: 5 is class 1 now
    assert counts["already applied"] == 2 and doc["annotations"][0]["category_id"] == 0  # the input untouched
    boxes = sorted((a["category_id"], a["bbox"]) for a in fixed["annotations"])
    assert boxes == [(0, [10, 10, 20, 20]), (0, [50, 50, 20, 20]), (1, [10, 10, 20, 20])]
