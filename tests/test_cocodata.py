import json

import pytest

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
