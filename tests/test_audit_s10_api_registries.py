"""Every name a registry knows builds (with its defaults, plus the arguments it requires) and works on a tiny input;
an unknown name is refused with the valid ones listed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import metric.distances  # noqa: F401  (the imports register the components)
import metric.losses  # noqa: F401
import metric.miners  # noqa: F401
import metric.samplers  # noqa: F401
from apps.retrieval import POOLINGS, RETRIEVAL_LAYOUTS
from coseg.data import LAYOUTS, SYNTHETIC_LAYOUTS, find_samples, make_synthetic_coseg
from coseg.models import ARCHITECTURES, create_model
from coseg.objective import SEGMENTATION_LOSSES
from metric.miners import SmartMiner, TripletIndices
from metric.registry import BATCH_SAMPLERS, DISTANCES, LOSSES, MINERS

LABELS = torch.arange(4).repeat_interleave(3)  # 4 classes × 3 samples
REQUIRED = {"soft_triple": {"num_classes": 4, "embedding_size": 8},
            "triplet_upper_bound": {"num_classes": 4, "embedding_size": 8}}


def loss_inputs(name: str) -> tuple:
    generator = torch.Generator().manual_seed(0)
    if name == "is_triplet":  # pixel embeddings (B, D, H, W), masks (B, H, W)
        maps = torch.nn.functional.normalize(torch.randn(2, 8, 6, 6, generator=generator), dim=1)
        return maps, (torch.rand(2, 6, 6, generator=generator) > 0.5).long()
    embeddings = torch.randn(len(LABELS), 8, generator=generator)
    if name == "representative_proximity":
        return embeddings, LABELS, torch.arange(len(LABELS)) % 3 == 0
    return embeddings, LABELS


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_builds_and_gives_a_finite_scalar(name: str) -> None:
    embeddings, *rest = loss_inputs(name)
    embeddings.requires_grad_(True)
    module = LOSSES.create(name, **REQUIRED.get(name, {}))
    if name == "hierarchical_triplet":  # its margins come from a class tree of the data set's embeddings
        module.update_tree(embeddings.detach(), LABELS)
    loss = module(embeddings, *rest)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("name", MINERS.names())
def test_every_miner_gives_valid_triplets(name: str) -> None:
    embeddings = torch.randn(len(LABELS), 8, generator=torch.Generator().manual_seed(0))
    triplets = MINERS.create(name)(embeddings, LABELS)
    assert isinstance(triplets, TripletIndices) and len(triplets.anchor) > 0
    a, p, n = triplets
    assert ((LABELS[a] == LABELS[p]) & (LABELS[a] != LABELS[n]) & (a != p)).all()


@pytest.mark.parametrize("name", DISTANCES.names())
def test_every_distance_gives_pairwise_and_paired_values(name: str) -> None:
    x, y = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), torch.randn(4, 5)
    distance = DISTANCES.create(name)
    pairwise = distance.pairwise(x, y)
    assert pairwise.shape == (3, 4) and torch.isfinite(pairwise).all()
    torch.testing.assert_close(distance.paired(x, y[:3]), pairwise.diagonal())


@pytest.mark.parametrize("name", BATCH_SAMPLERS.names())
def test_every_batch_sampler_yields_batches_of_the_data_set(name: str) -> None:
    if name == "smart_mining":
        miner = SmartMiner(num_neighbours=4, index="flat")
        miner.update(torch.randn(len(LABELS), 8, generator=torch.Generator().manual_seed(0)), LABELS)
        sampler = BATCH_SAMPLERS.create(name, miner=miner, labels=LABELS, triplets_per_batch=2)
    else:
        sampler = BATCH_SAMPLERS.create(name, labels=LABELS, classes_per_batch=2, samples_per_class=3)
    batches = list(sampler)
    assert batches and len(batches) == len(sampler)
    assert all(0 <= index < len(LABELS) for batch in batches for index in batch)


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_every_architecture_builds_with_the_documented_outputs(name: str) -> None:
    model = create_model(name, weights=None).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.mask_logits.shape == (2, 1, 64, 64)
    assert out.embeddings.shape == (2, 32, 16, 16)  # embedding_dim 32 at 1/4 resolution by default
    torch.testing.assert_close(out.embeddings.norm(dim=1), torch.ones(2, 16, 16))


@pytest.mark.parametrize("name", SEGMENTATION_LOSSES.names())
def test_every_segmentation_loss_builds(name: str) -> None:
    logits, masks = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    value = SEGMENTATION_LOSSES.create(name)(logits, masks)
    assert value.shape == () and torch.isfinite(value)


@pytest.mark.parametrize("name", POOLINGS.names())
def test_every_pooling_gives_one_vector_per_image(name: str) -> None:
    assert POOLINGS.create(name)(torch.rand(2, 5, 4, 4)).reshape(2, -1).shape == (2, 5)


def test_every_layout_finds_data_written_in_it(tmp_path: Path) -> None:
    assert sorted(SYNTHETIC_LAYOUTS) == LAYOUTS.names()
    for layout in LAYOUTS.names():
        root = make_synthetic_coseg(tmp_path / layout, num_groups=2, images_per_group=2, size=32, layout=layout)
        scan = find_samples(root, layout=layout)
        assert len({sample.group for sample in scan.samples}) == 2 and not scan.problems, layout


@pytest.mark.parametrize("registry", [LOSSES, MINERS, DISTANCES, BATCH_SAMPLERS, ARCHITECTURES, SEGMENTATION_LOSSES,
                                      POOLINGS, LAYOUTS, RETRIEVAL_LAYOUTS], ids=lambda r: r.family)
def test_an_unknown_name_lists_the_valid_ones(registry) -> None:
    with pytest.raises(KeyError, match=f"unknown {registry.family} 'nope'; valid names: ") as error:
        registry.create("nope")
    assert all(name in str(error.value) for name in registry.names()) and registry.names()
