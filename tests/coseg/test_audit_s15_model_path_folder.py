"""A model path that names a folder (a run folder instead of its best.safetensors) is named as a folder, for the
co-segmentation and the retrieval loaders alike; a missing file keeps its message."""
from __future__ import annotations

import pytest

from apps.retrieval import load_retrieval_model
from coseg.models import load_model


@pytest.mark.parametrize("load", [load_model, load_retrieval_model])
def test_a_folder_given_as_the_model_file_is_named_as_a_folder(tmp_path, load):
    with pytest.raises(FileNotFoundError, match="model file not found: .* is a folder; a run's model is its "
                                                "best.safetensors"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="model file not found") as missing:
        load(tmp_path / "absent.safetensors")
    assert "is a folder" not in str(missing.value)
