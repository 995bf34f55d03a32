"""`coseg retrieval train --loss NAME` with a registered loss that cannot train image embeddings: refused before
anything is written, with a message saying why."""
from __future__ import annotations

from click.testing import CliRunner

from apps.cli import main
from tests.apps.retrieval_runs import BACKBONE, TRAIN_CLASSES, tiny_set


def test_pixel_loss_is_refused_before_the_run_starts(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "retrieval", "train", "--data", str(data), "--train-classes", ",".join(TRAIN_CLASSES), "--output", str(run),
        "--backbone", BACKBONE, "--weights", "none", "--image-size", "32", "--embedding-dim", "8",
        "--classes-per-batch", "2", "--samples-per-class", "2", "--val-fraction", "0.34", "--epochs", "1",
        "--loss", "is_triplet", "--quiet", "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code != 0
    assert "is_triplet" in result.output and "per-pixel embedding maps" in result.output, result.output
    assert not run.exists()  # refused before config.yaml (or anything else) is written
