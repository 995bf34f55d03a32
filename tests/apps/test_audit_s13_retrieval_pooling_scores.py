"""GeM against a naive float64 reference (values and gradients, also of its power p), pooling a signed map by its
positive part as its docstring says; `retrieval evaluate` on awkward class folders (non-ASCII names, one image in two
classes, a single-image class) scores as pytorch-metric-learning does on the same embeddings."""
from __future__ import annotations

import shutil

import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.evaluate import embed_split, evaluate_checkpoint, load_for_retrieval
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.pooling import GeM
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE


def naive_gem(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1 / p)


@pytest.mark.parametrize("p", [0.5, 1.0, 3.0, 12.0])
def test_gem_values_and_gradients_equal_a_naive_reference(p):
    torch.manual_seed(0)
    x = (torch.rand(2, 3, 4, 5, dtype=torch.float64) * 5).requires_grad_()
    gem, power = GeM(p), torch.tensor(p, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, dtype=torch.float64)
    (gem(x) * weights).sum().backward()
    ours_x, ours_p = x.grad.clone(), gem.p.grad.clone()
    x.grad = None
    (naive_gem(x, power) * weights).sum().backward()
    torch.testing.assert_close(gem(x).detach(), naive_gem(x, power).detach())
    torch.testing.assert_close(ours_x, x.grad)
    torch.testing.assert_close(ours_p.double(), power.grad, rtol=1e-6, atol=1e-7)


def test_gem_pools_a_signed_map_by_its_positive_part():
    x = torch.tensor([[[[-3.0, 2.0], [-1.0, 4.0]], [[-1.0, -2.0], [-5.0, -0.5]]]])  # (1, 2, 2, 2)
    pooled = GeM(3.0)(x)
    torch.testing.assert_close(pooled, GeM(3.0)(x.relu()))
    assert pooled[0, 1].item() == pytest.approx(1e-6)  # a channel without a positive value: eps


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, pooling="gem", embedding_dim=8, flip_average=True).save(
        path, metadata={"image_size": "32"})
    return path


def test_awkward_class_folders_score_as_pml_on_the_same_embeddings(checkpoint, tmp_path):
    data = tmp_path / "données"
    for c, (name, count) in enumerate({"café": 3, "Ωmega": 2, "lone": 1, "b": 4}.items()):
        for k in range(count):
            tiny_image(data / name / f"é{k}.jpg", seed=10 * c + k)
    shutil.copyfile(data / "b" / "é0.jpg", data / "café" / "copy_of_b.jpg")  # one image in two classes
    summary = evaluate_checkpoint(checkpoint, data, tmp_path / "eval", split="all").summary
    assert (summary["images"], summary["queries"], summary["classes"]) == (11, 10, 4)

    model, size = load_for_retrieval(checkpoint, torch.device("cpu"))
    dataset = RetrievalImageDataset(load_retrieval_split(data, "all").records, size)
    embeddings, kept, _ = embed_split(model, dataset, torch.device("cpu"))
    labels = dataset.labels[kept]
    pml = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
    expected = pml.get_accuracy(embeddings, labels)
    assert summary["R@1"] == pytest.approx(100 * expected["precision_at_1"], abs=1e-6)
    assert summary["MAP@R"] == pytest.approx(100 * expected["mean_average_precision_at_r"], abs=1e-6)
