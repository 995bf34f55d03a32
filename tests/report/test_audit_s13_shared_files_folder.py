"""A report whose PNG folder is another report's (``x.html`` and ``x.htm`` share ``x_files/``) is refused: it would
replace the pictures that the other page shows."""
from __future__ import annotations

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import run_files


@pytest.mark.parametrize(("first", "second"),
                         [("x.html", "x.htm"), ("x.html", "x"), ("a" * 250 + ".html", "a" * 250 + ".htm")],
                         ids=["htm", "no suffix", "long"])
def test_a_page_whose_pictures_folder_is_another_reports_is_refused(tmp_path, first, second):
    """Two page names of one stem share their files folder: the second report would replace the first's pictures,
    which its page would then show."""
    earlier = build_report(run_files(tmp_path / "run"), tmp_path / first, progress=False)
    pictures = {p.name: p.read_bytes() for p in earlier.files.iterdir()}
    (tmp_path / "other" / "log.csv").parent.mkdir()
    (tmp_path / "other" / "log.csv").write_text("epoch,train_loss\n1,5.0\n")
    with pytest.raises(ValueError, match=rf"holds the pictures of the report {first}, which this report would "
                                         r"replace; choose another name for it \(`coseg report --output`\)"):
        build_report(tmp_path / "other", tmp_path / second, progress=False)
    assert {p.name: p.read_bytes() for p in earlier.files.iterdir()} == pictures
    assert not (tmp_path / second).exists()
