"""firedetd/training/data.py: folder discovery, clear errors naming the path, class counts."""

import pytest

pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.data import DatasetError, class_counts, format_counts, list_split  # noqa: E402


def make_tree(root, counts):
    for split, per_class in counts.items():
        for label, n in per_class.items():
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / ("img_%d.jpg" % i)).write_bytes(b"\xff\xd8\xff")


def test_lists_every_class_and_counts(tmp_path):
    make_tree(tmp_path, {"train": {"fire": 2, "smoke": 3, "none": 1}})
    samples = list_split(tmp_path, "train")
    assert class_counts(samples) == {"fire": 2, "smoke": 3, "none": 1}
    assert format_counts("train", samples).endswith("total 6")


def test_missing_split_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path / "val") + ": split folder not found"):
        list_split(tmp_path, "val")


def test_missing_class_folder_names_the_path(tmp_path):
    make_tree(tmp_path, {"train": {"fire": 1, "none": 1}})
    with pytest.raises(DatasetError, match=str(tmp_path / "train" / "smoke") + ": class folder not found"):
        list_split(tmp_path, "train")


def test_empty_class_folder_names_the_path(tmp_path):
    make_tree(tmp_path, {"train": {"fire": 1, "smoke": 0, "none": 1}})
    with pytest.raises(DatasetError, match="smoke: class folder holds no images"):
        list_split(tmp_path, "train")


def test_real_dataset_counts(shared_dir):
    import os

    samples = list_split(os.path.join(shared_dir, "data", "fire-smoke"), "test")
    counts = class_counts(samples)
    assert all(counts[k] > 100 for k in counts)
