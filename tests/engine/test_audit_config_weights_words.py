"""config.yaml keeps ``--weights imagenet`` and ``--weights none`` as words when the run starts in a folder holding
a folder of that name (was: saved as its absolute path, which every later ``--resume`` then refused to load as a
weights file), while the data folder is still made absolute."""
from __future__ import annotations

import pytest

from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.train import RUN_FOLDER as RETRIEVAL_RUN_FOLDER
from coseg.config import CosegTrainConfig
from coseg.engine import load_config
from coseg.train import RUN_FOLDER


@pytest.mark.parametrize("config, run_folder", [(CosegTrainConfig, RUN_FOLDER),
                                                (RetrievalTrainConfig, RETRIEVAL_RUN_FOLDER)])
@pytest.mark.parametrize("weights", ["imagenet", "none"])
def test_weights_words_are_saved_as_words_beside_a_folder_of_that_name(tmp_path, monkeypatch, config, run_folder,
                                                                       weights):
    monkeypatch.chdir(tmp_path)
    for folder in ("imagenet", "none", "data"):
        (tmp_path / folder).mkdir()
    run_folder.save_config(config(data="data", weights=weights), tmp_path / "config.yaml")
    saved = load_config(config, tmp_path / "config.yaml")
    assert saved.weights == weights
    assert saved.data == str(tmp_path / "data")
