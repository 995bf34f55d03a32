"""Loss weights that only look like numbers: ``True`` (a flag, not a weight) and a tensor of several values are
refused by name, as strings and None are."""
import pytest
import torch

from coseg.objective import CosegObjective
from metric.losses import ISTripletLoss


@pytest.mark.parametrize("weights, triplet_weight, words", [({"dice": 1.0, "ce": True}, 0.0, "ce True"),
                                                             ({"dice": 1.0}, False, "triplet False"),
                                                             ({"dice": torch.ones(2)}, 0.0, "dice tensor")])
def test_flags_and_tensors_of_several_values_are_no_weights(weights, triplet_weight, words):
    with pytest.raises(TypeError, match=f"^loss weights must be numbers, got {words}"):
        CosegObjective(weights, triplet_weight, ISTripletLoss())


def test_a_one_element_tensor_weight_is_a_number():
    objective = CosegObjective({"dice": torch.tensor(0.5)}, 0.0)
    assert objective.seg_weights == {"dice": 0.5}
