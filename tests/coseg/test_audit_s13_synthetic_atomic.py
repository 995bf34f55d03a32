"""make_synthetic_coseg writes each image and mask atomically: a run stopped while it writes a file leaves the files
it finished and no part of the one it was writing. Its counts are whole numbers."""
from __future__ import annotations

from pathlib import Path

import pytest

from coseg.data.synthetic import make_synthetic_coseg


def test_a_run_stopped_mid_file_leaves_only_whole_files(tmp_path, monkeypatch):
    whole = make_synthetic_coseg(tmp_path / "whole", num_groups=1, images_per_group=3, size=16)
    write_bytes = Path.write_bytes
    writes = []

    def stopped_on_the_third(path: Path, data: bytes) -> int:
        writes.append(path)
        if len(writes) == 3:  # as a kill would: half the bytes on disk, then the run is gone
            write_bytes(path, data[:len(data) // 2])
            raise KeyboardInterrupt
        return write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", stopped_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_coseg(tmp_path / "stopped", num_groups=1, images_per_group=3, size=16)
    monkeypatch.undo()
    stopped = tmp_path / "stopped"
    files = sorted(p.relative_to(stopped) for p in stopped.rglob("*") if p.is_file())
    assert files == [Path("ground_truth/00-star/img000.png"), Path("images/00-star/img000.jpg")]
    for name in files:
        assert (stopped / name).read_bytes() == (whole / name).read_bytes(), name


@pytest.mark.parametrize("empty", [1.5, True, "1"])
def test_a_count_of_empty_images_that_is_no_whole_number_is_refused_naming_it(tmp_path, empty):
    """1.5 and True were taken (as one empty image a group), "1" failed comparing an int with a str."""
    with pytest.raises(TypeError, match=f"empty_per_group must be an integer, got {empty!r}"):
        make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=4, size=16, empty_per_group=empty)
    assert not any(tmp_path.iterdir())
