"""Audit (session 9): a run reading its backbone features from --cache-dir trains as the run that computed them."""
from __future__ import annotations

import torch

from apps.retrieval.model import load_retrieval_model
from apps.retrieval.train import train
from tests.apps.retrieval_runs import tiny_config, tiny_set


def test_cached_features_leave_the_run_as_it_was(tmp_path):
    """Computing the features drew DataLoader seeds from torch's global generator and reading them from the cache
    did not, so the same command trained another model once the cache was warm."""
    data = tiny_set(tmp_path / "data")
    weights = []
    for name, cache in (("plain", None), ("cold", tmp_path / "cache"), ("warm", tmp_path / "cache")):
        train(tiny_config(data, tmp_path / name, cache_dir=None if cache is None else str(cache), threads=1))
        weights.append(load_retrieval_model(tmp_path / name / "last.safetensors").state_dict())
    assert any((tmp_path / "cache").glob("features-*.npy"))
    for other in weights[1:]:
        assert all(torch.equal(other[k], weights[0][k]) for k in weights[0])
