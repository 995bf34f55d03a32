"""A report's ``output`` naming a folder (an existing one, ``.``, ``..``, ``/``) is refused before anything is written:
its PNG folder used to be put in place (``outdir_files/``, ``run/.._files/``) before writing the page failed, or a
bare "has an empty name" (naming neither the option nor the problem) was raised."""
from __future__ import annotations

import os

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import run_files


@pytest.mark.parametrize("output", ["outdir", "run/..", ".", "/"], ids=["existing folder", "dot-dot", "dot", "root"])
def test_an_output_naming_a_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch, output):
    run = run_files(tmp_path / "run")
    (tmp_path / "outdir").mkdir()
    monkeypatch.chdir(tmp_path)
    before = sorted(os.walk(tmp_path))
    with pytest.raises(ValueError) as error:
        build_report(run, output, progress=False)
    assert str(error.value) == (f"{output}: cannot write the report there (Is a directory); choose another place for "
                                "it (`coseg report --output`)")
    assert sorted(os.walk(tmp_path)) == before
