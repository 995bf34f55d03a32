"""A resumed ensemble whose own ``last.safetensors`` cannot be read: the resume goes on (the file is written again
when the members end) but says so, naming the file, instead of leaving a damaged file without a word."""
from pathlib import Path

from coseg.train import _mark_unfinished


def test_a_damaged_ensemble_model_file_is_named_and_left_for_the_members_end(tmp_path: Path, capsys) -> None:
    damaged = tmp_path / "last.safetensors"
    damaged.write_bytes(b"not a model file")
    _mark_unfinished(damaged)
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and str(damaged) in err and "written again when its members end" in err
    assert damaged.read_bytes() == b"not a model file"


def test_no_ensemble_model_file_yet_is_no_warning(tmp_path: Path, capsys) -> None:
    _mark_unfinished(tmp_path / "last.safetensors")
    assert capsys.readouterr().err == ""
