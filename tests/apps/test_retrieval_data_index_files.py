"""Index files of real downloads, edited or re-saved by users: byte order marks, Windows line endings, Unicode line
separators inside names, one image listed twice."""
from __future__ import annotations

from apps.retrieval import load_retrieval_split
from tests.apps.retrieval_files import write_cub, write_sop

CUB_INDEX = ("images.txt", "image_class_labels.txt", "classes.txt")


def test_cub_index_files_with_a_byte_order_mark_and_windows_line_endings(tmp_path):
    """Was: the first line of each file (id "\\ufeff1") a bad line, so image 1 or class 1 lost."""
    plain = load_retrieval_split(write_cub(tmp_path / "plain", [1, 2, 101]), "train")
    root = write_cub(tmp_path / "windows", [1, 2, 101])
    for name in CUB_INDEX:
        text = (root / name).read_bytes()
        (root / name).write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n") + b"\r\n\r\n")
    data = load_retrieval_split(root, "train")
    assert data.problems == [] and data.classes == plain.classes == ["001.Bird_1", "002.Bird_2"]
    assert [r.path.relative_to(root) for r in data.records] == [r.path.relative_to(plain.root) for r in plain.records]


def test_sop_header_after_a_byte_order_mark_is_a_header(tmp_path):
    root = write_sop(tmp_path)
    index = root / "Ebay_train.txt"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes())
    data = load_retrieval_split(root, "train")
    assert data.problems == [] and len(data.records) == 6  # was: "bad line: ... line 1: 'image_id class_id ...'"


def test_a_unicode_line_separator_inside_a_class_name_does_not_split_its_line(tmp_path):
    root = write_cub(tmp_path, [1, 2])
    (root / "classes.txt").write_text("1 001.Bird\u2028One\n2 002.Bird_2\n", encoding="utf-8")
    data = load_retrieval_split(root, "train")
    assert data.problems == [] and data.classes == ["001.Bird\u2028One", "002.Bird_2"]  # was: "001.Bird", a bad line


def test_an_image_listed_twice_is_kept_once_and_reported(tmp_path):
    """Was: two records of one file, each the other's nearest neighbour at distance 0 (inflated recall)."""
    root = write_cub(tmp_path, [1, 2, 3])
    with open(root / "images.txt", "a") as f:
        f.write("20 001.Bird_1/Bird_1_0000.jpg\n21 001.Bird_1/Bird_1_0001.jpg\n")
    with open(root / "image_class_labels.txt", "a") as f:
        f.write("20 1\n21 3\n")
    data = load_retrieval_split(root, "train")
    assert len(data.records) == 6 and len({r.path for r in data.records}) == 6
    assert [str(p) for p in data.problems] == [
        f"duplicate image: {root / 'images' / '001.Bird_1' / 'Bird_1_0000.jpg'} (listed again in the cub index)",
        f"duplicate image: {root / 'images' / '001.Bird_1' / 'Bird_1_0001.jpg'} (listed again in the cub index as "
        "class '003.Bird_3' (kept: '001.Bird_1'))"]
