"""Report sections checked against the run folders they come from: two linked ensembles (distinct headings), a run
stopped between its log row and its model files (no best mark on an epoch whose model was not saved), and a folder
that can be listed but not entered (left out, as one that cannot be listed)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from coseg.models import create_model
from coseg.report import training
from coseg.report.build import build_report
from tests.report.report_runs import LOG, parse_page, run_files
from tests.report.test_audit_report_contents import lock


def _evaluation(folder: Path, checkpoint: Path) -> Path:
    """A co-segmentation evaluation folder (one image) whose summary names ``checkpoint``."""
    folder.mkdir(parents=True)
    (folder / "per_image.csv").write_text("group,image,P,J,empty_gt\ng,a.jpg,90.0,50.0,0\n", encoding="utf-8")
    summary = {"P": 90.0, "J": 50.0, "per_group": {"g": {"P": 90.0, "J": 50.0, "images": 1}}, "images": 1,
               "checkpoint": str(checkpoint)}
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def test_the_members_of_two_linked_ensembles_have_headings_telling_them_apart(tmp_path):
    """A folder of two evaluations of two ensembles trained elsewhere: both ensembles' members were headed
    "Training: member0", "Training: member1", twice, in the page and its links."""
    for name in ("ens_a", "ens_b"):
        for member in ("", "member0", "member1"):
            run_files(tmp_path / name / member)
        _evaluation(tmp_path / "evals" / f"eval_{name[-1]}", tmp_path / name / "best.safetensors")
    result = build_report(tmp_path / "evals", progress=False)
    assert result.sections == [
        "Training: ens_a", "Training: ens_a/member0", "Training: ens_a/member1", "Evaluation: eval_a",
        "Training: ens_b", "Training: ens_b/member0", "Training: ens_b/member1", "Evaluation: eval_b"]
    assert not result.problems
    text = result.path.read_text(encoding="utf-8")
    assert '<a href="#s6">Training: ens_b/member0</a>' in text and "<h2>Training: ens_b/member0</h2>" in text


def test_headings_of_folders_with_the_same_path_ends_fall_back_to_their_whole_paths(tmp_path):
    """Two linked runs named "run" whose shortest telling suffix ("a/run") is the name of a run in the report's
    folder: each heading still names one folder."""
    for name in ("a/run", "b/run"):
        run_files(tmp_path / name)
    root = tmp_path / "evals"
    run_files(root / "a" / "run")  # no sub-run of root's: only its direct sub-folders are looked in
    run_files(root / "a")
    _evaluation(root / "eval_1", tmp_path / "a" / "run" / "best.safetensors")
    _evaluation(root / "eval_2", tmp_path / "b" / "run" / "best.safetensors")
    assert build_report(root, progress=False).sections == [
        "Training: a", f"Training: {root.resolve() / 'a' / 'run'}", f"Training: {tmp_path.resolve() / 'a' / 'run'}",
        "Evaluation: eval_1", "Training: b/run", "Evaluation: eval_2"]


def _run_stopped_after_its_log_row(run: Path) -> Path:
    """A run whose log.csv holds epochs 1-3, the best J at epoch 3, whose model files hold epoch 2: stopped after
    writing epoch 3's row, before its last.pt and model files."""
    run_files(run)
    (run / "log.csv").write_text(LOG.replace("88.2,58.6", "88.2,70.0"))
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    for name in ("best", "last"):
        model.save(run / f"{name}.safetensors", metadata={"epoch": "2", "val_J": "60.1", "finished": "no"})
    return run


def test_an_epoch_logged_but_not_saved_is_not_marked_best(tmp_path, monkeypatch):
    """The best J of log.csv is epoch 3's, but the run was stopped before saving epoch 3's model: the curves marked
    epoch 3 best, whose model is in no file (best.safetensors holds epoch 2's)."""
    marks = []
    plot = training.line_plot
    monkeypatch.setattr(training, "line_plot", lambda *args, mark=None, **kwargs: (
        marks.append(mark), plot(*args, mark=mark, **kwargs))[1])
    run = _run_stopped_after_its_log_row(tmp_path / "run")
    html = training.training_section(run, tmp_path / "files", "s1")
    assert marks == [(2, "best J (epoch 2)")] * 2
    assert "<b>Not saved:</b> log.csv's epoch(s) 3 came after the last model file's (epoch 2)" in html
    assert "its last model is of epoch 2" in html
    (run / "last.safetensors").unlink()  # a run of an older version, or one whose first epoch is not saved yet
    marks.clear()
    html = training.training_section(run, tmp_path / "files", "s1")
    assert marks == [(3, "best J (epoch 3)")] * 2 and "Not saved" not in html


def test_a_folder_that_can_be_listed_but_not_entered_does_not_stop_the_report(tmp_path, monkeypatch):
    """A folder of runs holding one with ``chmod 444`` (its names can be listed, its files cannot be looked at), or an
    evaluation whose checkpoint's run is such a folder: PermissionError stopped the whole report."""
    root = tmp_path / "runs"
    run_files(root / "mine")
    locked = [run_files(root / "theirs"), run_files(tmp_path / "linked")]
    _evaluation(root / "eval", tmp_path / "linked" / "best.safetensors")
    stat = os.stat

    def looking(path, *args, **kwargs):  # as for a user other than root (root enters every folder)
        if not isinstance(path, int) and any(os.fspath(path).startswith(f"{f}{os.sep}") for f in locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", looking)
    result = build_report(root, progress=False)
    assert result.sections == ["Evaluation: eval", "Training: mine"] and result.problems == []
    assert result.left_out == [root / "theirs"]
    assert parse_page(result.path).tables["s1-groups"][1] == ["g", "1", "90.00", "50.00"]
    assert "Folders left out, as they cannot be listed or entered: theirs." in result.path.read_text(encoding="utf-8")


def test_the_folders_a_report_leaves_out_are_named(tmp_path, monkeypatch):
    """Folders that cannot be listed or entered were left out without a word: in the page, and in the refusal when
    nothing else is there to report."""
    root = tmp_path / "runs"
    run_files(root / "mine")
    for name in ("<b>&x\"", "lost+found"):
        (root / name).mkdir()
        lock(monkeypatch, root / name)
    result = build_report(root, progress=False)
    assert result.left_out == [root / "<b>&x\"", root / "lost+found"]
    assert ("Folders left out, as they cannot be listed or entered: &lt;b&gt;&amp;x&quot;, lost+found."
            in result.path.read_text(encoding="utf-8"))
    shutil.rmtree(root / "mine")
    with pytest.raises(ValueError, match=r"nothing to report .*; folders left out, as they cannot be listed or "
                                         r"entered: <b>&x\", lost\+found$"):
        build_report(root, progress=False)


def test_an_evaluation_whose_model_is_in_a_folder_nobody_may_enter_is_reported(tmp_path, monkeypatch):
    """The checkpoint summary.json names lies in a run inside a folder that cannot be entered (another user's home):
    looking whether its run is a folder stopped the report with PermissionError."""
    run_files(tmp_path / "theirs" / "run")
    evaluation = _evaluation(tmp_path / "eval", tmp_path / "theirs" / "run" / "best.safetensors")
    lock(monkeypatch, tmp_path / "theirs")
    result = build_report(evaluation, progress=False)
    assert result.sections == ["Evaluation: eval"] and result.problems == []


def test_coseg_report_prints_the_folders_it_leaves_out(tmp_path, monkeypatch):
    """The command printed the sections that failed but not the folders left out, named only in the page."""
    from click.testing import CliRunner

    from apps.cli import main

    root = tmp_path / "runs"
    run_files(root / "mine")
    (root / "theirs").mkdir()
    lock(monkeypatch, root / "theirs")
    result = CliRunner().invoke(main, ["report", str(root), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"  left out: {root / 'theirs'} (it cannot be listed or entered)" in result.output.splitlines()
