"""The demo and retrieval evaluate remove an earlier report before their other earlier outputs: while a `coseg report`
writes that page (its lock held by another process), they stop with the earlier scores and report whole. Was: their
summary.json (and the demo's per_image.csv) was gone when the refusal came."""
from __future__ import annotations

import pytest

from apps.retrieval.evaluate import write_evaluation
from coseg.demo import run_demo
from coseg.report.build import MADE_BY
from tests.coseg.test_audit_s15_evaluate_lock import held, snapshot


def earlier_outputs(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"earlier {name}\n")
    (folder / "report.html").write_text(f"<p>{MADE_BY}</p>")


def test_the_demo_stops_with_the_earlier_demo_whole(tmp_path):
    out = tmp_path / "demo"
    earlier_outputs(out, ["summary.json", "per_image.csv"])
    with held(out, ".report.html.lock"):
        with pytest.raises(ValueError, match="`coseg report` is writing report.html there"):
            run_demo(out, minutes=0.01, device="cpu", quiet=True)
        assert (out / "summary.json").read_text() == "earlier summary.json\n"
        assert (out / "per_image.csv").read_text() == "earlier per_image.csv\n"
        assert (out / "report.html").is_file()
        assert not (out / "run").exists()  # stopped before training


def test_retrieval_evaluate_stops_with_the_earlier_evaluation_whole(tmp_path):
    out = tmp_path / "eval"
    earlier_outputs(out, ["summary.json", "neighbours.csv"])
    with held(out, ".report.html.lock"):
        before = snapshot(out)
        with pytest.raises(ValueError, match="`coseg report` is writing report.html there"):
            write_evaluation({"R@1": 50.0}, None, None, [], out)
        assert snapshot(out) == before
