"""A symbolic link to a folder the report lists already (``latest -> eval``, or ``.``) gives no second section: the
two sections' same heading used to stop the report with a bare ``StopIteration``."""
from __future__ import annotations

import os

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import evaluation_folder, parse_page


@pytest.mark.parametrize(("report_of", "link", "target"),
                         [("run", "run/latest", "eval"), ("run/eval", "run/eval/same", ".")],
                         ids=["to a sub-folder", "to the folder itself"])
def test_a_link_to_a_listed_folder_gives_one_section(tmp_path, report_of, link, target):
    evaluation_folder(tmp_path)
    os.symlink(target, tmp_path / link)
    result = build_report(tmp_path / report_of, per_group=1, thumbnail=16, progress=False)
    assert result.sections == ["Training: run", "Evaluation: eval"] and not result.problems
    assert len(parse_page(result.path).images) == 2 + 3 * 3  # the curves, and one triple per group
