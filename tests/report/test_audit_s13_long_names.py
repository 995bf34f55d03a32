"""Report pages of long names (the file system's limit is 255 bytes per name, UTF-8 ``é`` taking 2): the files
folder, the lock and the staging folder named after the page are shortened; a page name that cannot be is refused
before anything is written."""
from __future__ import annotations

import hashlib
import os
from urllib.parse import unquote_to_bytes

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.atomic import NAME_BYTES, fitted_name
from coseg.report.build import build_report
from tests.report.report_runs import parse_page, run_files


def naive_fitted(name, suffix, limit):
    """Whole characters of ``name`` added one by one while the start, ``~<8 hex digits>`` and ``suffix`` fit."""
    if len((name + suffix).encode("utf-8")) <= limit:
        return name + suffix
    tail = "~" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8] + suffix
    start = ""
    for character in name:
        if len((start + character + tail).encode("utf-8")) > limit:
            break
        start += character
    return start + tail


@pytest.mark.parametrize("name", ["report", "a" * 249, "a" * 250, "é" * 125, "中" * 90, "😀" * 70, "x" * 600],
                         ids=["short", "fits", "1 byte over", "2-byte", "3-byte", "4-byte", "long"])
def test_fitted_name_matches_a_naive_loop(name):
    fitted = fitted_name(name, "_files")
    assert fitted == naive_fitted(name, "_files", NAME_BYTES)
    assert len(os.fsencode(fitted)) <= NAME_BYTES and fitted.endswith("_files")
    if len((name + "_files").encode()) > NAME_BYTES:
        assert fitted[:10] == name[:10] and len(os.fsencode(fitted)) > NAME_BYTES - 4  # readable, not cut short


def test_fitted_names_of_long_names_sharing_their_start_differ():
    assert fitted_name("a" * 300 + "1", ".lock") != fitted_name("a" * 300 + "2", ".lock")
    assert fitted_name("a" * 300, ".lock") == fitted_name("a" * 300, ".lock")


@pytest.mark.parametrize("stem", ["a" * 242, "a" * 250, "é" * 125, "b" * 248 + "é"],
                         ids=["242", "250", "2-byte", "2-byte last"])
def test_report_of_a_long_page_name_is_written_and_rewritten(tmp_path, stem):
    """Page names up to 255 bytes: its files folder, lock and staging folder would be longer than that."""
    run = run_files(tmp_path / "run")
    page = tmp_path / f"{stem}.html"
    assert len(os.fsencode(page.name)) <= NAME_BYTES
    for _ in range(2):  # the second report replaces the first: the same names on every run
        result = build_report(run, page, progress=False)
        assert result.path == page and not result.problems
        assert len(os.fsencode(result.files.name)) <= NAME_BYTES and result.files.name.endswith("_files")
        images = parse_page(page).images
        assert len(images) == 2 and all((tmp_path / os.fsdecode(unquote_to_bytes(src))).is_file() for src in images)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([page.name, result.files.name, "run"])


def test_two_long_page_names_sharing_their_start_keep_their_own_pictures(tmp_path):
    run = run_files(tmp_path / "run")
    first = build_report(run, tmp_path / ("a" * 249 + "1.html"), progress=False)
    second = build_report(run, tmp_path / ("a" * 249 + "2.html"), progress=False)
    assert first.files != second.files and first.files.is_dir() and second.files.is_dir()


@pytest.mark.parametrize("name", ["a" * 251 + ".html", "😀" * 63 + ".html"], ids=["ascii", "4-byte"])
def test_a_page_name_beyond_the_limit_is_refused_before_writing(tmp_path, name):
    run = run_files(tmp_path / "run")
    size = len(name.encode())
    refused = rf"a file name of {size} bytes, longer than the 255 .*`coseg report --output`"
    with pytest.raises(ValueError, match=refused):
        build_report(run, tmp_path / name, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    r = CliRunner().invoke(main, ["report", str(run), "--output", str(tmp_path / name), "--quiet"])
    assert r.exit_code != 0 and f"a file name of {size} bytes" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

