"""apps.retrieval.train: class-disjoint validation, every loss and sampler name trains, components from names
(unused options rejected), PCA head start, cached features, hooks' state, fine-tuning stage, resume."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.features import FeatureDataset, cached_features
from apps.retrieval.head_init import init_head, within_class_whitening
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.inference import embed_dataset
from apps.retrieval.learner import RetrievalLearner
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from apps.retrieval.train import EpochBatches, load_training_data, split_classes, train, training_records
from coseg.engine import ConfigError, load_training_state
from coseg.models import checkpoint_metadata
from metric.registry import BATCH_SAMPLERS, LOSSES
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE, CLASSES, TRAIN_CLASSES, tiny_config, tiny_set
from tests.helpers import assert_close

# Image-level losses the trainer trains with; the others are not image-level training losses (see the test below).
PIXEL_OR_PART = {"is_triplet": "pixel-level", "representative_proximity": "needs a representative mask",
                 "zero_mean": "a regulariser: labels unused"}
TRAINABLE_LOSSES = [name for name in LOSSES.names() if name not in PIXEL_OR_PART]
# A sampler needs a loss that can use it: smart mining hands the loss mined triplets.
SAMPLER_LOSS = {"smart_mining": "global"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_set(tmp_path_factory.mktemp("retrieval") / "data")


def log_rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_validation_classes_are_held_out_of_the_training_classes(data, tmp_path):
    loaded = load_training_data(tiny_config(data, tmp_path))
    assert len(loaded.val_classes) == 2 and len(loaded.train_classes) == 4
    assert set(loaded.train_classes).isdisjoint(loaded.val_classes)
    assert set(loaded.train_classes) | set(loaded.val_classes) == set(TRAIN_CLASSES)  # never the test classes
    for dataset, classes in ((loaded.train, loaded.train_classes), (loaded.val, loaded.val_classes)):
        assert {r.path.parent.name for r in dataset.records} == set(classes)
        assert sorted(set(dataset.labels.tolist())) == list(range(len(classes)))
        assert all(r.path.parent.name == classes[r.label] for r in dataset.records)


def test_explicit_and_impossible_validation_splits():
    cfg = RetrievalTrainConfig(val_classes=["B", "c"])
    assert split_classes(["a", "b", "c", "d"], cfg) == (["a", "d"], ["b", "c"])
    assert split_classes(["a", "b"], RetrievalTrainConfig(val_fraction=0)) == (["a", "b"], [])
    with pytest.raises(ValueError, match="too few to hold out 2"):
        split_classes(["a", "b", "c"], RetrievalTrainConfig(val_fraction=0.2))


def test_classes_sharing_image_files_fall_on_one_side_of_validation(tmp_path):
    """A class holding a copy of another class's image is drawn with it: the image never validates a model that
    trained on it; naming one of them as validation class is refused."""
    data = tiny_set(tmp_path / "data")
    cfg = next(c for c in (tiny_config(data, tmp_path / "run", seed=seed) for seed in range(50))
               if {"class1", "class2"} & set(split_classes(TRAIN_CLASSES, c)[1]) == {"class2"})  # apart by chance
    shutil.copyfile(data / "class1" / "img000.jpg", data / "class2" / "copy.jpg")
    train_classes, val_classes = training_records(cfg)[2:]
    assert ({"class1", "class2"} <= set(train_classes)) or ({"class1", "class2"} <= set(val_classes))
    with pytest.raises(ValueError, match="validation classes share images with training classes: 'class2' with "
                                         "'class1'"):
        training_records(tiny_config(data, tmp_path / "run", val_classes=["class2", "class3"]))


def test_a_training_class_of_unreadable_files_is_left_out_and_named(tmp_path):
    data = tiny_set(tmp_path / "data")
    (data / "broken").mkdir()
    for name in ("a.jpg", "b.png"):
        (data / "broken" / name).write_bytes(b"not an image")
    (data / "class0" / "c.jpg").write_bytes(b"not an image")
    cfg = tiny_config(data, tmp_path / "run", train_classes=[*TRAIN_CLASSES[:3], "broken"], val_fraction=0,
                      classes_per_batch=3)
    loaded = load_training_data(cfg)
    assert loaded.train_classes == TRAIN_CLASSES[:3] and sorted(set(loaded.train.labels.tolist())) == [0, 1, 2]
    assert sorted(path.name for path, _ in loaded.skipped) == ["a.jpg", "b.png", "c.jpg"]
    cfg = tiny_config(data, tmp_path / "run", train_classes=[*TRAIN_CLASSES[:2], "broken"], val_fraction=0,
                      classes_per_batch=3)
    message = (r"--classes-per-batch 3, but training has 2 class\(es\) .*: lower --classes-per-batch to at most 2: "
               r"no image of the training class\(es\) broken could be read \(first: .*broken/a.jpg: not a decodable "
               r"image")
    with pytest.raises(ValueError, match=message):
        train(cfg)


def test_validation_classes_of_single_images_are_a_clear_error(tmp_path):
    data = tiny_set(tmp_path / "data")
    for name in ("solo a", "solo b"):
        tiny_image(data / name / "only.jpg", seed=len(name))
    cfg = tiny_config(data, tmp_path / "run", train_classes=[*TRAIN_CLASSES, "solo a", "solo b"],
                      val_classes=["solo a", "solo b"], val_fraction=0.2)
    with pytest.raises(ValueError, match="no validation class has two readable images.*: solo a, solo b"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("loss", TRAINABLE_LOSSES)
def test_every_loss_trains_an_epoch(loss, data, tmp_path):
    result = train(tiny_config(data, tmp_path / "run", loss=loss, epochs=1))
    row = log_rows(tmp_path / "run")[0]
    assert result.stages["head"].epochs_run == 1 and float(row["train_loss"]) >= 0
    assert 0 <= float(row["val_MAP@R"]) <= 100
    assert load_retrieval_model(tmp_path / "run" / "best.safetensors").embedding_dim == 8


@pytest.mark.parametrize("sampler", BATCH_SAMPLERS.names())
def test_every_sampler_trains_an_epoch(sampler, data, tmp_path):
    loss = SAMPLER_LOSS.get(sampler, "triplet_margin")
    result = train(tiny_config(data, tmp_path / "run", sampler=sampler, loss=loss, epochs=1))
    assert result.stages["head"].epochs_run == 1
    assert float(log_rows(tmp_path / "run")[0]["train_loss"]) >= 0


@pytest.mark.parametrize("loss", sorted(PIXEL_OR_PART))
def test_losses_that_are_not_image_level_fail_clearly(loss, data, tmp_path):
    with pytest.raises((ConfigError, ValueError)):
        train(tiny_config(data, tmp_path / "run", loss=loss, epochs=1))


def test_components_from_names_and_unused_options():
    labels = torch.arange(4).repeat_interleave(3)
    cfg = RetrievalTrainConfig(loss="triplet_margin", miner="semi_hard", distance="snr", margin=0.3,
                               classes_per_batch=2, samples_per_class=3)
    parts = build_components(cfg, labels, 4)
    assert type(parts.distance).__name__ == "SNRDistance" and parts.loss.distance is parts.distance
    assert parts.loss.miner is parts.miner and parts.miner.margin == 0.3 == parts.loss.margin
    assert type(parts.sampler).__name__ == "PKBatchSampler" and parts.hooks == []
    with pytest.raises(ConfigError, match="--la set but not used by loss 'triplet_margin'"):
        build_components(RetrievalTrainConfig(la=10.0, classes_per_batch=2), labels, 4)
    with pytest.raises(ConfigError, match=r"loss 'triplet_margin': argument 'margin' must be float, got '0.3' \(str\)"):
        build_components(RetrievalTrainConfig(margin="0.3", classes_per_batch=2), labels, 4)
    with pytest.raises(ConfigError, match="does not take a miner"):
        build_components(RetrievalTrainConfig(loss="soft_triple", miner="batch_hard", classes_per_batch=2), labels, 4)
    with pytest.raises(KeyError, match="unknown batch sampler 'pq'; valid names: class_representative"):
        build_components(RetrievalTrainConfig(sampler="pq"), labels, 4)
    soft = build_components(RetrievalTrainConfig(loss="soft_triple", la=10.0, centers_per_class=2,
                                                 classes_per_batch=2), labels, 4).loss
    assert soft.la == 10.0 and soft.centers.shape == (128, 4 * 2)
    smart = build_components(RetrievalTrainConfig(loss="global", sampler="smart_mining", classes_per_batch=2,
                                                  samples_per_class=3, num_neighbours=5), labels, 4)
    assert smart.sampler.miner.num_neighbours == 5 and smart.sampler.triplets_per_batch == 2
    # under torchrun the triplets of a batch are shared out whole: the error names the options that make their number
    with pytest.raises(ConfigError, match=r"--classes-per-batch × --samples-per-class / 3 \(rounded down\) = 2 × 2 / 3 "
                                          r"→ 1 triplet\(s\) per batch, which the 2 processes cannot share evenly"):
        build_components(RetrievalTrainConfig(loss="global", sampler="smart_mining", classes_per_batch=2,
                                              samples_per_class=2), labels, 4, rank=0, world_size=2)
    assert build_components(RetrievalTrainConfig(loss="global", sampler="smart_mining", classes_per_batch=2,
                                                 samples_per_class=3), labels, 4, rank=1, world_size=2).sampler
    with pytest.raises(ValueError, match="cannot take the triplets"):
        build_components(RetrievalTrainConfig(loss="soft_triple", sampler="smart_mining", classes_per_batch=2),
                         labels, 4)


def test_pca_head_start_keeps_the_geometry_of_the_features():
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=6)
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(model.feature_dim, 5, generator=generator))[0]  # 5-d subspace
    features = torch.randn(40, 5, generator=generator) * torch.tensor([5.0, 4, 3, 2, 1]) @ basis.T + 2.0
    init_head(model, features, "pca")
    with torch.no_grad():
        projected = model.embedding(features)
    ratio = torch.cdist(projected, projected)[~torch.eye(40, dtype=torch.bool)] / \
        torch.cdist(features, features)[~torch.eye(40, dtype=torch.bool)]
    assert_close(ratio, torch.full_like(ratio, float(ratio.mean())), rtol=2e-3, atol=0)  # distances scaled alike
    assert_close(projected.mean(0), torch.zeros(6), rtol=0, atol=1e-4)  # centred
    init_head(model, features, "pca_whiten")
    with torch.no_grad():
        spread = model.embedding(features)[:, :5].std(0)
    assert_close(spread, torch.full_like(spread, float(spread.mean())), rtol=1e-3, atol=1e-4)  # whitened axes


def naive_within_class_scatter(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(features.shape[1], features.shape[1], dtype=torch.float64)
    classes = sorted(set(labels.tolist()))
    for c in classes:
        rows = [x.double() for x, y in zip(features, labels.tolist()) if y == c]
        mean = sum(rows) / len(rows)
        for x in rows:
            total += torch.outer(x - mean, x - mean)
    return total / (len(features) - len(classes))


def test_within_class_whitening_against_a_naive_reference():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(30, 6, generator=generator, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 0.5, 2, 1])
    labels = torch.tensor([0, 1, 2] * 10)
    scatter = naive_within_class_scatter(features, labels)
    for shrinkage in (0.1, 10.0):
        w = within_class_whitening(features, labels, shrinkage)
        shrunk = scatter + shrinkage * torch.trace(scatter) / 6 * torch.eye(6, dtype=torch.float64)
        assert_close(w, w.T, rtol=0, atol=1e-12)
        assert_close(w @ shrunk @ w, torch.eye(6, dtype=torch.float64), rtol=0, atol=1e-9)  # whitens it
    with pytest.raises(ValueError, match="shrinkage must be > 0"):
        within_class_whitening(features, labels, 0.0)


def test_class_whiten_head_start_damps_what_varies_within_classes():
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=0)
    f = model.feature_dim
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(10)
    # Classes apart along axis 0 (by 1); within a class, a large spread along axes 1-5 (std 3), small elsewhere.
    features = torch.randn(40, f, generator=generator) * 0.05
    features[:, 0] += labels.float()
    features[:, 1:6] += 3 * torch.randn(40, 5, generator=generator)
    init_head(model, features, "class_whiten", labels, shrinkage=0.1)
    with torch.no_grad():
        projected = model.embedding(features).double()
    whitened = (features.double() - features.double().mean(0)) @ within_class_whitening(
        features.double(), labels, 0.1)
    ratio = torch.pdist(projected) / torch.pdist(whitened)
    assert_close(ratio, torch.full_like(ratio, float(ratio.mean())), rtol=1e-4, atol=0)  # a rotation, scaled

    def nearest_is_same_class(x: torch.Tensor) -> float:
        d = torch.cdist(x, x) + torch.eye(40) * 1e9
        return float((labels[d.argmin(1)] == labels).float().mean())

    assert nearest_is_same_class(features) < 0.5 and nearest_is_same_class(projected.float()) > 0.95
    reduced = create_retrieval_model(BACKBONE, weights=None, embedding_dim=3)
    init_head(reduced, features, "class_whiten", labels, shrinkage=0.1)
    with torch.no_grad():
        assert nearest_is_same_class(reduced.embedding(features)) > 0.95  # the top whitened axes keep the classes
    with pytest.raises(ValueError, match="class_whiten needs the class labels"):
        init_head(model, features, "class_whiten")


def test_identity_head_start_is_the_frozen_features_and_trains_from_there(data, tmp_path):
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=0)
    assert model.embedding_dim == model.feature_dim and model.config["embedding_dim"] == model.feature_dim
    features = torch.randn(10, model.feature_dim)
    init_head(model, features, "identity")
    with torch.no_grad():
        assert_close(model.embed_features(features), torch.nn.functional.normalize(features), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="needs embedding_dim = the backbone's feature size"):
        init_head(create_retrieval_model(BACKBONE, weights=None, embedding_dim=8), features, "identity")
    with pytest.raises(ValueError, match="embedding_dim must be >= 0"):
        create_retrieval_model(BACKBONE, weights=None, embedding_dim=-1)
    result = train(tiny_config(data, tmp_path / "run", embedding_dim=0, head_init="identity",
                               loss="triplet_upper_bound", epochs=1))
    trained = load_retrieval_model(tmp_path / "run" / "best.safetensors")
    assert result.stages["head"].epochs_run == 1 and trained.embedding_dim == trained.feature_dim
    moved = (trained.embedding.weight.detach() - torch.eye(trained.feature_dim)).abs().max()
    assert 0 < float(moved) < 0.1  # a residual step away from the identity


def test_cached_features_are_read_back_without_the_backbone(data, tmp_path, monkeypatch):
    loaded = load_training_data(tiny_config(data, tmp_path))
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8)
    first = cached_features(model, loaded.train, 2, torch.device("cpu"), cache_dir=tmp_path / "cache")
    assert first.shape == (2, len(loaded.train), model.feature_dim)
    with torch.no_grad():
        mirrored = model.features(torch.stack([loaded.train[i]["image"] for i in range(3)]).float().div(255).flip(-1))
    assert_close(first[1, :3], mirrored, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(model, "features", lambda x: pytest.fail("the backbone ran again"))
    again = cached_features(model, loaded.train, 2, torch.device("cpu"), cache_dir=tmp_path / "cache")
    assert torch.equal(again, first)
    other = RetrievalImageDataset(loaded.val.records, 32)
    monkeypatch.undo()
    assert cached_features(model, other, 1, torch.device("cpu"), cache_dir=tmp_path / "cache").shape[1] == len(other)
    dataset = FeatureDataset(first, loaded.train.labels)
    item = dataset[3]
    assert any(torch.equal(item["features"], first[v, 3]) for v in range(2)) and item["label"] == loaded.train.labels[3]


def test_a_damaged_cached_features_file_is_computed_again(data, tmp_path):
    """A garbled .npy header raised tokenize's TokenError out of the run; any file that does not load is recomputed."""
    loaded = load_training_data(tiny_config(data, tmp_path))
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8)
    first = cached_features(model, loaded.train, 1, torch.device("cpu"), cache_dir=tmp_path / "cache")
    (stored,) = (tmp_path / "cache").glob("features-*.npy")
    header = bytearray(stored.read_bytes())
    header[10:11] = b"'"  # the dict literal of the header opens an unterminated string
    stored.write_bytes(bytes(header))
    again = cached_features(model, loaded.train, 1, torch.device("cpu"), cache_dir=tmp_path / "cache")
    assert torch.equal(again, first) and np.array_equal(np.load(stored), first[0].numpy())  # rewritten whole


def test_epoch_batches_call_back_and_make_several_passes():
    calls = []
    pk = BATCH_SAMPLERS.create("pk", labels=[0, 0, 0, 0, 1, 1, 1, 1], classes_per_batch=2, samples_per_class=2)
    batches = EpochBatches(pk, passes=3, on_epoch=lambda: calls.append(len(calls)))
    batches.set_epoch(1)
    first = list(batches)
    batches.set_epoch(2)
    second = list(batches)
    assert calls == [0, 1] and len(first) == len(second) == len(batches) == 3 * len(pk) == 6
    for epoch in (first, second):  # each pass covers the data set once
        for start in (0, 2, 4):
            assert sorted(i for batch in epoch[start:start + 2] for i in batch) == list(range(8))
    assert first != second and first[:2] != first[2:4]


def test_head_passes_make_longer_epochs(data, tmp_path, monkeypatch):
    steps = []
    objective = RetrievalLearner.objective
    monkeypatch.setattr(RetrievalLearner, "objective", lambda self, *a: steps.append(1) or objective(self, *a))
    result = train(tiny_config(data, tmp_path / "run", epochs=1, head_passes=3))
    # 4 training classes × 4 images, 2 classes × 2 images per batch: 4 batches per pass
    assert result.stages["head"].epochs_run == 1 and len(log_rows(tmp_path / "run")) == 1 and len(steps) == 12


def test_smart_mining_controller_offset_is_checkpointed(data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data, run, loss="global", sampler="smart_mining", epochs=2, target_active=0.9,
                      controller_gain=0.5))
    rows = log_rows(run)
    assert {"train_active", "train_offset"} <= set(rows[0])
    state = load_training_state(run / "last.pt")
    offsets = [v for k, v in state["model"].items() if k.endswith("offset")]
    assert len(offsets) == 1 and abs(float(offsets[0]) - float(rows[-1]["train_offset"])) < 0.5


def test_upper_bound_centroids_are_turned_to_the_classes_once_and_resumed(data, tmp_path, monkeypatch):
    from metric.losses import TripletUpperBoundLoss, fixed_centroids

    aligned = []
    align = TripletUpperBoundLoss.align_centroids
    monkeypatch.setattr(TripletUpperBoundLoss, "align_centroids", lambda self, m: aligned.append(m) or align(self, m))
    run = tmp_path / "run"
    train(tiny_config(data, run, loss="triplet_upper_bound", epochs=2))
    assert len(aligned) == 1 and aligned[0].shape == (4, 8)  # 4 training classes, before the first epoch only
    centroids = load_training_state(run / "last.pt")["model"]["loss.centroids"]
    simplex = fixed_centroids(4, 8)
    assert not torch.allclose(centroids, simplex)
    assert_close(centroids @ centroids.T, simplex @ simplex.T, rtol=0, atol=1e-5)  # rigidly turned
    train(tiny_config(data, run, loss="triplet_upper_bound", epochs=3), resume=True)
    assert len(aligned) == 1  # the resumed run keeps the checkpointed centroids
    off = tmp_path / "off"
    train(tiny_config(data, off, loss="triplet_upper_bound", epochs=1, align_centroids=False))
    assert len(aligned) == 1 and torch.equal(load_training_state(off / "last.pt")["model"]["loss.centroids"], simplex)
    with pytest.raises(ConfigError, match="--align-centroids set but not used by loss 'triplet_margin'"):
        train(tiny_config(data, tmp_path / "bad", align_centroids=True))


def test_class_whiten_head_start_with_pooled_stages_and_flip_average(data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(data, run, embedding_dim=0, head_init="class_whiten", pool_stages=[-1],
                               flip_average=True, epochs=1))
    model = load_retrieval_model(run / "best.safetensors")
    assert result.stages["head"].epochs_run == 1 and model.flip_average and model.pool_stages
    assert model.embedding_dim == model.feature_dim > create_retrieval_model(BACKBONE, weights=None).feature_dim
    with pytest.raises(ValueError, match="whiten_shrinkage must be > 0"):
        train(tiny_config(data, tmp_path / "bad", head_init="class_whiten", whiten_shrinkage=0.0))


@pytest.mark.parametrize("views", [1, 2])
def test_head_stage_hooks_see_the_training_set_as_the_model_embeds_it_with_flip_average(data, tmp_path,
                                                                                      monkeypatch, views):
    seen, before_epoch = [], RetrievalLearner.before_epoch

    def record(learner, embed, labels):  # the head's weights and what the hooks get, each epoch
        seen.append((embed().values, {k: v.clone() for k, v in learner.net.state_dict().items()}))
        before_epoch(learner, embed, labels)

    monkeypatch.setattr(RetrievalLearner, "before_epoch", record)
    cfg = tiny_config(data, tmp_path / "run", flip_average=True, feature_views=views, epochs=2,
                      sampler="smart_mining", loss="global")
    train(cfg)
    images = load_training_data(cfg).train
    net = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8, flip_average=True)
    assert len(seen) == 2
    for embedded, state in seen:
        net.load_state_dict(state)
        assert_close(embedded, embed_dataset(net.eval(), images, torch.device("cpu")), rtol=1e-4, atol=1e-5)


def test_resume_continues_the_head_stage(data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1))
    result = train(tiny_config(data, run, epochs=3), resume=True)
    assert [int(r["epoch"]) for r in log_rows(run)] == [1, 2, 3] and result.stages["head"].epochs_run == 3


def test_finetuning_leaves_the_frozen_stages_as_they_were(data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1, finetune_epochs=1, frozen_stages=2, backbone_lr=1e-2))
    before = load_retrieval_model(run / "last.safetensors").state_dict()  # the head stage's: backbone as built
    after = load_retrieval_model(run / "finetune" / "last.safetensors").state_dict()
    frozen = ("backbone.conv_stem.", "backbone.bn1.", "backbone.blocks.0.", "backbone.blocks.1.")
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(frozen))
    changed = [k for k in before if not torch.equal(after[k], before[k])]
    assert any(k.startswith("backbone.blocks.2.") for k in changed) and "embedding.weight" in changed
    with pytest.raises(ValueError, match="frozen_stages must be >= 0, got -1"):
        train(tiny_config(data, tmp_path / "bad", frozen_stages=-1))


def test_finetune_stage_and_end_to_end(data, tmp_path):
    run = tmp_path / "staged"
    result = train(tiny_config(data, run, epochs=1, finetune_epochs=1, loss="soft_triple"))
    assert set(result.stages) == {"head", "finetune"}
    assert (run / "finetune" / "best.safetensors").is_file() and len(log_rows(run / "finetune")) == 1
    best_of_stages = max(result.stages["head"].best_metric, result.stages["finetune"].best_metric)
    kept = load_retrieval_model(run / "best.safetensors")
    assert float(checkpoint_metadata(run / "best.safetensors")["MAP@R"]) == pytest.approx(best_of_stages, abs=1e-3)
    assert kept.embedding_dim == 8
    end = train(tiny_config(data, tmp_path / "e2e", mode="end_to_end", epochs=1, head_init="random"))
    assert set(end.stages) == {"end_to_end"} and end.feature_seconds == 0
    assert len(log_rows(tmp_path / "e2e")) == 1 and set(CLASSES[6:]).isdisjoint(end.train_classes + end.val_classes)


@pytest.mark.parametrize("option, value, message", [
    ("classes_per_batch", 0, "classes_per_batch must be >= 1, got 0"), ("head_passes", 0, "head_passes must be >= 1"),
    ("threads", -1, "threads must be >= 1, got -1"), ("workers", -1, "workers must be >= 0, got -1"),
    ("minutes", -1.0, "minutes must be >= 0"), ("finetune_minutes", -1.0, "finetune_minutes must be >= 0"),
    ("minutes", float("nan"), "minutes must be >= 0, got nan"), ("lr", float("nan"), "lr must be >= 0, got nan"),
    ("feature_views", 0, r"feature_views must be in \[1, 4\], got 0"),
    ("val_fraction", -0.2, r"val_fraction must be in \[0, 1\), got -0.2"),  # was: trained without validation
    ("lr", -1e-3, "lr must be >= 0, got -0.001"),  # was: refused by AdamW after the features were computed
    ("backbone_lr", -1e-5, "backbone_lr must be >= 0"),  # was: fine-tuned the backbone up the loss
    ("loss_lr", -1e-2, "loss_lr must be >= 0"), ("weight_decay", -1e-4, "weight_decay must be >= 0"),
    ("zero_mean_weight", -1.0, "zero_mean_weight must be >= 0"),
    ("proximity_weight", -0.1, "proximity_weight must be >= 0"),
    ("lr_schedule", "linear", "unknown lr schedule 'linear'; valid: constant, cosine"),  # was: after the features
])
def test_options_out_of_range_are_refused_naming_the_option(data, tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_config(data, tmp_path / "run", **{option: value}))
    assert not (tmp_path / "run").exists()


def test_head_stage_reads_its_cached_features_in_the_main_process(data, tmp_path):
    """Worker processes would draw each feature's view from generators no checkpoint holds: a run resumed with
    --workers 2 would not equal the uninterrupted one. The head stage ignores --workers, so both equal 0 workers."""
    from safetensors.torch import load_file

    train(tiny_config(data, tmp_path / "w0", epochs=2))
    train(tiny_config(data, tmp_path / "w2", epochs=2, workers=2))
    a, b = (load_file(str(tmp_path / run / "last.safetensors")) for run in ("w0", "w2"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_anew(data, tmp_path):
    from safetensors.torch import load_file

    train(tiny_config(data, tmp_path / "whole", epochs=1))
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1))
    (run / "last.pt").unlink()  # as if killed in epoch 1: config.yaml written, no checkpoint yet
    (run / "log.csv").unlink()
    train(tiny_config(data, run, epochs=1), resume=True)
    a, b = (load_file(str(folder / "last.safetensors")) for folder in (tmp_path / "whole", run))
    assert all(torch.equal(a[k], b[k]) for k in a) and [int(r["epoch"]) for r in log_rows(run)] == [1]


def test_unknown_validation_classes_are_named_as_classes():
    from apps.retrieval.train import split_classes

    with pytest.raises(ValueError, match=r"cannot resolve 1 class name\(s\) among 4 classes: 'zebra' not found"):
        split_classes(["ant", "bee", "cat", "dog"], RetrievalTrainConfig(val_classes=["zebra"]))


def test_a_head_start_that_cannot_fit_is_refused_before_any_image_is_decoded(data, tmp_path, monkeypatch):
    from apps.retrieval import train as train_module

    decoded = []
    monkeypatch.setattr(train_module, "load_training_data", lambda *a, **k: decoded.append(1))
    with pytest.raises(ValueError, match=r"head_init identity needs embedding_dim = the backbone's feature size"):
        train(tiny_config(data, tmp_path / "a", embedding_dim=8, head_init="identity"))
    with pytest.raises(ValueError, match=r"head_init 'pca' needs embedding_dim \(4096\) <= the backbone's feature"):
        train(tiny_config(data, tmp_path / "b", embedding_dim=4096, head_init="pca"))
    assert decoded == []
