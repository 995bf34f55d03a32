"""A write that must not replace a file (`coseg split`'s output): a file made at its path by another process while
the write is under way is kept, the write refused naming the path, its temporary file removed; also on file systems
without hard links."""
from __future__ import annotations

import errno
import json
import os

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.atomic import atomic_path, write_text_atomic
from coseg.data import make_synthetic_coseg


def no_hard_links(monkeypatch) -> None:
    def link(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted", src, None, dst)  # vfat's answer

    monkeypatch.setattr(os, "link", link)


@pytest.fixture(params=["hard-links", "no-hard-links"])
def file_system(request, monkeypatch) -> str:
    if request.param == "no-hard-links":
        no_hard_links(monkeypatch)
    return request.param


def test_a_file_made_meanwhile_is_kept_and_named(tmp_path, file_system):
    target = tmp_path / "splits.json"
    with pytest.raises(FileExistsError) as caught:
        with atomic_path(target, replace=False) as tmp:
            tmp.write_text("mine")
            target.write_text("theirs")  # another process, between the check and the rename
    assert caught.value.filename == str(target) and caught.value.errno == errno.EEXIST
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"] and target.read_text() == "theirs"


def test_a_dangling_link_is_not_replaced(tmp_path, file_system):
    target = tmp_path / "splits.json"
    target.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FileExistsError):
        write_text_atomic(target, "mine", replace=False)
    assert target.is_symlink() and [p.name for p in tmp_path.iterdir()] == ["splits.json"]


def test_a_new_file_is_written_whole_with_a_plain_writes_mode(tmp_path, file_system):
    target, plain = tmp_path / "splits.json", tmp_path / "plain.json"
    plain.write_text("x")
    write_text_atomic(target, "mine", replace=False)
    assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "splits.json"]
    assert os.stat(target).st_mode == os.stat(plain).st_mode and os.stat(target).st_nlink == 1


def test_replacing_stays_the_default(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def split_data(tmp_path):
    return make_synthetic_coseg(tmp_path / "data", num_groups=4, images_per_group=2, size=16, seed=0)


def test_coseg_split_keeps_a_splits_file_made_while_it_draws(tmp_path, monkeypatch, file_system):
    import coseg.data

    data = split_data(tmp_path)
    output = tmp_path / "splits.json"
    draw = coseg.data.train_test_split

    def slow_draw(*args, **kwargs):
        output.write_text('{"test": ["theirs"]}')  # another `coseg split` finished first
        return draw(*args, **kwargs)

    monkeypatch.setattr(coseg.data, "train_test_split", slow_draw)
    result = CliRunner().invoke(main, ["split", "--data", str(data), "--output", str(output)])
    assert result.exit_code == 1, result.output
    assert f"Error: {output} exists; choose another --output (it is never replaced)" in result.output
    assert json.loads(output.read_text()) == {"test": ["theirs"]}
    assert [p.name for p in tmp_path.iterdir()] == ["data", "splits.json"]


def test_coseg_split_refuses_a_dangling_link_before_reading_the_data(tmp_path, monkeypatch):
    import coseg.data

    output = tmp_path / "splits.json"
    output.symlink_to(tmp_path / "gone.json")
    monkeypatch.setattr(coseg.data, "find_samples", lambda *a: pytest.fail("the data was read"))
    result = CliRunner().invoke(main, ["split", "--data", str(split_data(tmp_path)), "--output", str(output)])
    assert result.exit_code == 1 and f"{output} exists; choose another --output" in result.output
    assert output.is_symlink()


def test_coseg_split_names_a_file_where_its_folder_goes(tmp_path):
    (tmp_path / "runs").write_text("a file")
    output = tmp_path / "runs" / "splits.json"
    result = CliRunner().invoke(main, ["split", "--data", str(split_data(tmp_path)), "--output", str(output)])
    assert result.exit_code == 1 and "exists; choose another" not in result.output
    assert str(tmp_path / "runs") in result.output and (tmp_path / "runs").read_text() == "a file"


def test_a_folder_no_file_can_be_made_in_is_named_by_the_file_meant(tmp_path, monkeypatch):
    """A read-only folder: the error names the file asked for, not the random temporary name (`Error: Permission
    denied: data/.splits.json.tmp-02d5xqaw.json`)."""
    import tempfile

    def read_only(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}k2j3{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "splits.json"
    with pytest.raises(PermissionError) as caught:
        write_text_atomic(target, "mine")
    assert caught.value.filename == str(target) and caught.value.errno == errno.EACCES


def test_a_folder_no_staging_folder_can_be_made_in_is_named_by_the_folder_meant(tmp_path, monkeypatch):
    import tempfile

    from coseg.atomic import staging_folder

    def read_only(prefix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}k2j3"))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(PermissionError) as caught:
        with staging_folder(tmp_path / "predictions"):
            pass
    assert caught.value.filename == str(tmp_path / "predictions")
