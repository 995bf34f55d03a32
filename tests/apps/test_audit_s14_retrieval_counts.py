"""The retrieval Python API's counts: a negative ``workers`` or ``report_queries``, a ``batch_size`` of 0, an
``image_size`` that is no whole number are refused before anything is read or written, naming the argument (the
commands' options refuse them themselves)."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.retrieval.evaluate import evaluate_checkpoint
from apps.retrieval.export import export_folder
from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path


def test_export_refuses_a_negative_worker_count_writing_nothing(tmp_path: Path, model: Path) -> None:
    # was: torch's "num_workers option should be non-negative", after the output's .shards/ folder was made
    data = write_class_folders(tmp_path / "data", ["a", "b"])
    with pytest.raises(ValueError, match=r"^workers must be an integer >= 0, got -1$"):
        export_folder(model, data, tmp_path / "out", workers=-1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes, message", [
    ({"workers": -1}, "workers must be an integer >= 0, got -1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"report_queries": -1}, "report_queries must be an integer >= 0, got -1")])
def test_evaluate_refuses_counts_below_their_least_reading_nothing(tmp_path: Path, model: Path, monkeypatch,
                                                                   changes: dict, message: str) -> None:
    # was: torch's "num_workers option should be non-negative" (or "batch_size should be a positive integer value")
    # after every image had been decoded; report_queries -1 scored without a report
    import apps.retrieval.evaluate as evaluate

    def no_images(*args, **kwargs):
        raise AssertionError("the images were read")

    monkeypatch.setattr(evaluate, "RetrievalImageDataset", no_images)
    data = write_class_folders(tmp_path / "data", ["a", "b"])
    with pytest.raises(ValueError, match=f"^{message}$"):
        evaluate_checkpoint(model, data, tmp_path / "out", split="all", **changes)
    assert not (tmp_path / "out").exists()


def test_export_refuses_an_image_size_that_is_no_whole_number_writing_nothing(tmp_path: Path, model: Path) -> None:
    # was: refused only after the output's .shards/ folder was made
    data = write_class_folders(tmp_path / "data", ["a", "b"])
    with pytest.raises(ValueError, match=r"^image_size must be an integer >= 1, got 2\.5$"):
        export_folder(model, data, tmp_path / "out", image_size=2.5)
    assert not (tmp_path / "out").exists()
