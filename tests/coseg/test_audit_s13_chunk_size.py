"""predict_group's chunk_size must be a whole number: 2.5 and True failed inside torch's split with a message that
named neither the argument nor the value."""
from __future__ import annotations

import pytest
import torch

from coseg.models import CosegEnsemble, create_model


@pytest.mark.parametrize("chunk_size", [2.5, True, "4"])
def test_a_chunk_size_that_is_no_whole_number_is_refused_naming_it(chunk_size):
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    for predictor in (model, CosegEnsemble([model])):
        with pytest.raises(TypeError, match=f"chunk_size must be an integer, got {chunk_size!r}"):
            predictor.predict_group(torch.rand(3, 3, 64, 64), chunk_size=chunk_size)
