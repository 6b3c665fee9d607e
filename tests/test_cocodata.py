import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coco2yolo.cocodata import CategoryMap, describe_ids, validate_dataset
from coco2yolo.errors import UserError


@pytest.mark.parametrize("ids", [[0, 3, 7], [1, 2, 3, 4], [5], [9, 0, 4]])
def test_category_map_round_trips_any_id_set(ids, tmp_path):
    cmap = CategoryMap([{"id": i, "name": f"n{i}"} for i in ids])
    assert cmap.ids == sorted(ids)
    assert [cmap.class_of(i) for i in sorted(ids)] == list(range(len(ids)))
    assert [cmap.category_of(k) for k in range(len(ids))] == sorted(ids)
    back = CategoryMap.load(cmap.save(tmp_path / "categories.json"))
    assert back == cmap and back.names == [f"n{i}" for i in sorted(ids)]


def test_category_map_rejects_inconsistent_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"categories": [{"class_index": 1, "category_id": 0, "name": "a"},
                                            {"class_index": 0, "category_id": 5, "name": "b"}]}))
    with pytest.raises(UserError, match="class_index"):
        CategoryMap.load(p)


def _ds(**over):
    d = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
         "categories": [{"id": 0, "name": "x"}],
         "annotations": [{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2]}]}
    d.update(over)
    return d


@pytest.mark.parametrize("data, match", [
    ([], "expected a COCO dataset object"),
    ({"categories": []}, "missing 'images'"),
    (_ds(images=[{"id": 1, "file_name": "a.jpg", "width": 10}]), "missing 'height'"),
    (_ds(images=[{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}] * 2), "duplicate image id 1"),
    (_ds(images=[{"id": "1", "file_name": "a.jpg", "width": 10, "height": 10}]), "'id' must be an integer"),
    (_ds(annotations=[{"id": 0, "image_id": 2, "category_id": 0, "bbox": [1, 1, 2, 2]}]), "image_id 2 is not in"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}]),
     r"category_id 3 is unknown; allowed: 0"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, -2, 2]}]), "negative width"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, float("nan"), 2]}]),
     "4 finite numbers"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2]}]), "4 finite numbers"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 0}]), "missing 'bbox'"),
    (_ds(annotations=[{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2]}] * 2),
     "duplicate annotation id 0"),
    (_ds(categories=[{"id": 0, "name": "x"}, {"id": 0, "name": "y"}]), "duplicate category id 0"),
])
def test_validation_names_file_record_and_allowed_values(data, match):
    with pytest.raises(UserError, match=match) as exc:
        validate_dataset(data, "train.json")
    assert str(exc.value).startswith("train.json")
    assert "\n" not in str(exc.value)


def test_validation_fills_defaults_without_touching_input():
    d = _ds()
    out = validate_dataset(d, "x")
    assert out["annotations"][0]["iscrowd"] == 0 and out["annotations"][0]["area"] == 4
    assert "iscrowd" not in d["annotations"][0]


def test_describe_ids():
    assert describe_ids({0, 1, 2, 3}) == "0..3"
    assert describe_ids([7, 0, 3]) == "0, 3, 7"


_VALUES = st.sampled_from([0, 1, 2, 7, -1, 1.0, 0.5, True, False, None, "1", float("nan"), float("inf"), 2**63,
                           -(2**63) - 1, [1, 1, 2, 2], (1, 1, 2, 2), [1, 1, 2], [1, 1, -2, 2], [1, 1, True, 2],
                           [0.5, 1e300, 2, 3], [1, 1, float("nan"), 2], {}])


_GOOD = [{"id": 0, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2]},
         {"id": 1, "image_id": 2, "category_id": 3, "bbox": [0, 0.5, 3, 4.25], "x": 1},
         {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 0], "iscrowd": 1, "area": 7}]
_BAD = ({"bbox": [1, 1, -2, 2]}, {"bbox": [1, 1, 2, float("inf")]}, {"bbox": (1, 1, 2, 2)}, {"bbox": [1, 1, 2, True]},
        {"iscrowd": True}, {"iscrowd": 1.0}, {"id": 5.0}, {"id": 2**63}, {"image_id": 3}, {"category_id": 1},
        {"area": "7"}, {"bbox": [0, 0, 2**70, 1]}, {"bbox": [0, 0, 10**400, 1]})


@settings(max_examples=300, deadline=None)
@given(anns=st.lists(st.dictionaries(st.sampled_from(["id", "image_id", "category_id", "bbox", "iscrowd", "area"]),
                                     _VALUES), max_size=4),
       base=st.lists(st.sampled_from(_GOOD + [{"id": 5, "image_id": 1, "category_id": 0, "bbox": [1, 1, 2, 2], **bad}
                                              for bad in _BAD]), max_size=3))
def test_fast_path_agrees_with_the_checking_loop(anns, base):
    """validate_dataset checks most files in C and numpy and only copies; the loop that names the first bad
    record must give the same dataset or the same error on anything (bools, NaN, tuples, 2^63, repeats)."""
    import coco2yolo.cocodata as cocodata

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                       {"id": 2, "file_name": "b.jpg", "width": 10, "height": 10}],
            "categories": [{"id": 0, "name": "x"}, {"id": 3, "name": "y"}], "annotations": base + anns}

    def outcome():
        try:
            return validate_dataset(data, "t.json")
        except UserError as err:
            return str(err)

    fast = outcome()
    real = cocodata._annotations_pass
    cocodata._annotations_pass = lambda *a: False
    try:
        slow = outcome()
    finally:
        cocodata._annotations_pass = real
    assert repr(fast) == repr(slow)  # repr: types too (1 vs 1.0 vs True)
    ids = [a["id"] for a in base]
    if base and not anns and all(a in _GOOD for a in base) and len(set(ids)) == len(ids):
        assert not isinstance(fast, str) and real(data["annotations"], {1: None, 2: None}, {0, 3})  # taken


def test_json_reader_gives_json_values_and_json_errors(tmp_path):
    """load_json parses with msgspec and falls back to json for what msgspec refuses: same values, same errors."""
    from coco2yolo.fileio import load_json

    docs = [b'{"a": 1, "a": 2}', b'[1.0, -0.0, 1e-320, 0.1, 123456789012345678901234567890, -9223372036854775809]',
            b'[NaN, Infinity, -Infinity, 1e400]', '\ufeff{"b": "\u00e9"}'.encode("utf-8"),
            '{"c": [1, 2]}'.encode("utf-16"), b'{"d": "\\ud800"}', b'{"e": "x\\ny", "f": null, "g": true}',
            b'[' * 50 + b']' * 50]
    for i, raw in enumerate(docs):
        p = tmp_path / f"{i}.json"
        p.write_bytes(raw)
        expected = json.loads(raw)
        got = load_json(p)
        assert repr(got) == repr(expected), raw
    for i, raw in enumerate([b'{"a": 1', b'{"a": "x\ny"}', b'[1, 2] 3', b'\xff\xfe\x00', b'']):
        p = tmp_path / f"bad{i}.json"
        p.write_bytes(raw)
        with pytest.raises(UserError) as exc:
            load_json(p)
        try:
            json.loads(raw)
        except json.JSONDecodeError as err:
            assert f"{err.msg} at line {err.lineno} column {err.colno}" in str(exc.value)
        except UnicodeDecodeError:
            assert "not UTF-8" in str(exc.value) or "not valid JSON" in str(exc.value)
