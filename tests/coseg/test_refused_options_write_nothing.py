"""Options that do not fit together (group refinement or group statistics with --single-image) are refused before
anything is written: a refused ``predict`` leaves no ``predict.json`` that would refuse the next, valid run for
"masks" it never made, and a refused ``evaluate --report`` leaves the earlier evaluation's saved predictions paired."""
import pytest
import torch

from coseg.data import find_samples
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.models import GroupRefinement, GroupStatistics
from coseg.predict import predict_folder
from coseg.report.files import PREDICTION_INDEX, PREDICTIONS
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set

CPU = torch.device("cpu")
GROUP_STEPS = {"refinement": GroupRefinement(1), "statistics": GroupStatistics(8)}


@pytest.mark.parametrize("option", sorted(GROUP_STEPS))
def test_a_refused_predict_leaves_no_record_that_refuses_the_next_run(tmp_path, option):
    root = odd_sized_set(tmp_path / "data") / "images"
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="need group mode"):
        predict_folder(ConstantModel(0.8), 64, root, out, CPU, progress=False, group_mode=False,
                       checkpoint=checkpoint, **{option: GROUP_STEPS[option]})
    assert not out.exists() or not any(out.iterdir())
    report = predict_folder(ConstantModel(0.8), 64, root, out, CPU, progress=False, checkpoint=checkpoint)
    assert (report.written, report.already_done) == (3, 0)


@pytest.mark.parametrize("option", sorted(GROUP_STEPS))
def test_a_refused_evaluate_keeps_the_earlier_predictions_index(tmp_path, option):
    samples = find_samples(odd_sized_set(tmp_path / "data"), "icoseg").samples
    out = tmp_path / "eval"
    write_evaluation(evaluate_samples(ConstantModel(0.8), samples, 64, CPU, progress=False,
                                      predictions=out / PREDICTIONS), out)
    index = (out / PREDICTIONS / PREDICTION_INDEX).read_bytes()
    with pytest.raises(ValueError, match="need group mode"):
        evaluate_samples(ConstantModel(0.8), samples, 64, CPU, progress=False, group_mode=False,
                         predictions=out / PREDICTIONS, **{option: GROUP_STEPS[option]})
    assert (out / PREDICTIONS / PREDICTION_INDEX).read_bytes() == index
