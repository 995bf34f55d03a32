"""A ``coseg retrieval evaluate`` output written without ``--report`` (summary.json alone) is in its run's report
with its scores and a note on what ``--report`` adds, as a co-segmentation evaluation without saved masks is,
instead of being left out unsaid; a summary.json of anything else is still no retrieval evaluation."""
from __future__ import annotations

import json

import pytest

from coseg.report.build import build_report
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.report.report_runs import parse_page
from tests.report.test_report_cli import invoke


def test_a_retrieval_evaluation_without_report_files_is_reported_with_its_scores(tmp_path):
    from apps.retrieval.train import train

    data = tiny_set(tmp_path / "data")
    run = train(tiny_config(data, tmp_path / "run", epochs=1)).output
    r = invoke("retrieval", "evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output",
               run / "eval", "--quiet")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["summary.json"]
    summary = json.loads((run / "eval" / "summary.json").read_text())
    result = build_report(run, progress=False)
    assert result.sections == ["Training: run", "Retrieval evaluation: eval"] and not result.problems
    scores = next(rows for rows in parse_page(result.path).tables.values() if rows[0][:2] == ["R@1", "R@2"])
    assert scores[1][:5] == [f"{summary[m]:.2f}" for m in ("R@1", "R@2", "R@4", "R@8", "MAP@R")]
    assert "No queries saved in this folder" in result.path.read_text(encoding="utf-8")
    # the evaluation folder alone: its run linked by the checkpoint, as with --report
    assert build_report(run / "eval", progress=False).sections == ["Training: run", "Retrieval evaluation: eval"]


@pytest.mark.parametrize("summary", ['{"P": 80.0, "J": 40.0}', '{"R@1": 50.0}', "[1, 2]", "{cut"])
def test_another_summary_alone_is_still_nothing_to_report(tmp_path, summary):
    (tmp_path / "summary.json").write_text(summary)
    with pytest.raises(ValueError, match="nothing to report"):
        build_report(tmp_path, progress=False)
