"""Bool labels are two classes everywhere in metric/: the retrieval metrics, NMI and smart mining give what the same
labels as 0/1 integers give, as the losses, miners and samplers already did."""
from __future__ import annotations

import math

import numpy as np
import torch

from metric.losses import TripletMarginLoss
from metric.miners import SmartMiner
from metric.retrieval import kmeans_nmi, retrieval_metrics
from metric.samplers import PKBatchSampler

EMBEDDINGS = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
FLAGS = torch.tensor([True, False] * 6)


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_retrieval_metrics_and_nmi_take_bool_labels_as_two_classes() -> None:
    assert same(retrieval_metrics(EMBEDDINGS, FLAGS), retrieval_metrics(EMBEDDINGS, FLAGS.long()))
    assert same(retrieval_metrics(EMBEDDINGS.numpy(), FLAGS.numpy()), retrieval_metrics(EMBEDDINGS, FLAGS.long()))
    assert kmeans_nmi(EMBEDDINGS, FLAGS) == kmeans_nmi(EMBEDDINGS, FLAGS.long())


def test_smart_mining_takes_bool_labels_as_two_classes() -> None:
    mined = []
    for labels in (FLAGS, FLAGS.long()):
        miner = SmartMiner(num_neighbours=4, index="flat", seed=3)
        miner.update(EMBEDDINGS, labels)
        mined.append(miner.mine(torch.arange(12)))
    assert all(torch.equal(a, b) for a, b in zip(mined[0], mined[1]))
    anchors, positives, negatives = mined[0]
    assert (FLAGS[anchors] == FLAGS[positives]).all() and (FLAGS[anchors] != FLAGS[negatives]).all()


def test_losses_and_samplers_agree_with_integer_labels() -> None:
    loss = TripletMarginLoss(margin=0.5)
    assert loss(EMBEDDINGS, FLAGS) == loss(EMBEDDINGS, FLAGS.long())
    assert list(PKBatchSampler(FLAGS, 2, 3, seed=1)) == list(PKBatchSampler(FLAGS.long().numpy(), 2, 3, seed=1))
