"""A misspelt empty-mask convention given to evaluate_samples is refused before anything is predicted: it used to
be noticed only once every image was scored, after an earlier evaluation's saved masks had been removed and new
ones written without an index.csv listing them."""
import pytest
import torch

from coseg.data import find_samples
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.report.files import PREDICTION_INDEX
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set

CPU = torch.device("cpu")


class RefusingModel(ConstantModel):
    def predict_group(self, *args, **kwargs) -> torch.Tensor:
        raise AssertionError("predicted before the options were checked")


def test_an_unknown_empty_policy_is_refused_before_anything_is_predicted_or_removed(tmp_path):
    samples = find_samples(odd_sized_set(tmp_path / "data"), "icoseg").samples
    predictions = tmp_path / "out" / "predictions"
    earlier = evaluate_samples(ConstantModel(0.9), samples, 64, CPU, progress=False, predictions=predictions)
    write_evaluation(earlier, tmp_path / "out")
    assert (predictions / PREDICTION_INDEX).is_file()
    before = {p: p.read_bytes() for p in predictions.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="empty must be one of exclude, zero, got 'zeros'"):
        evaluate_samples(RefusingModel(0.1), samples, 64, CPU, progress=False, empty="zeros",  # type: ignore
                         predictions=predictions)
    assert {p: p.read_bytes() for p in predictions.rglob("*") if p.is_file()} == before
