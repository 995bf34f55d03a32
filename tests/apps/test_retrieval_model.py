"""apps.retrieval.model and pooling: shapes, unit embeddings, features + head == forward, GeM vs average,
frozen BatchNorm, offline ImageNet weights, normalisation inside, model files (round trip, pickle refusal)."""
from __future__ import annotations

import math

import pytest
import torch

from apps.retrieval import POOLINGS, GeM, RetrievalModel, create_retrieval_model, load_retrieval_model
from coseg.models import checkpoint_metadata, load_imagenet_state_dict
from coseg.models.checkpoint import write_checkpoint
from coseg.models.pretrained import WeightsDownloadError
from tests.coseg.malicious import malicious_pickle
from tests.helpers import assert_close


def images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, size, size)


@pytest.fixture(scope="module")
def gem_model() -> RetrievalModel:
    return create_retrieval_model(weights=None, pooling="gem", embedding_dim=16).eval()


def bn_statistics(model: RetrievalModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items() if "running" in k}


@pytest.mark.parametrize("pooling", POOLINGS.names())
def test_shapes_and_unit_norm(pooling):
    model = create_retrieval_model(weights=None, pooling=pooling, embedding_dim=7)
    embeddings = model(images())
    assert embeddings.shape == (2, 7) and model.embedding_dim == 7 and model.feature_dim == 1280
    assert_close(embeddings.norm(dim=1), torch.ones(2))
    assert model.config == {"backbone": "tf_efficientnet_lite0", "pooling": pooling, "embedding_dim": 7,
                            "freeze_bn": False, "mean": [0.5] * 3, "std": [0.5] * 3, "pool_stages": [],
                            "flip_average": False}


def test_features_then_head_equals_forward(gem_model):
    x = images(2, 64)
    with torch.no_grad():
        cached = gem_model.features(x)
        assert cached.shape == (2, 1280)
        assert_close(gem_model.embed_features(cached), gem_model(x))
    head_only = gem_model.embed_features(cached.requires_grad_(False))
    head_only.sum().backward()
    assert gem_model.embedding.weight.grad is not None  # the head trains on cached features
    assert all(p.grad is None for p in gem_model.feature_parameters())
    gem_model.zero_grad(set_to_none=True)


def test_pooled_stages_are_normalised_and_concatenated_after_the_final_map():
    model = create_retrieval_model(weights=None, pooling="gem", embedding_dim=0, pool_stages=[-1, 3]).eval()
    assert model.config["pool_stages"] == [3, 4] and model.feature_dim == 1280 + 112 + 320 == model.embedding_dim
    maps = {}
    for name, block in (("stage3", model.backbone.blocks[4]), ("stage4", model.backbone.blocks[6])):
        block.register_forward_hook(lambda module, args, out, name=name: maps.__setitem__(name, out))
    x = images(2, 64)
    with torch.no_grad():
        features = model.features(x)
        final = model.backbone.forward_features((x - 0.5) / 0.5)
    gem = model.pooling
    expected = torch.cat([torch.nn.functional.normalize(gem(m), dim=1)
                          for m in (final, maps["stage3"], maps["stage4"])], dim=1)
    assert_close(features, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"pool_stages \[5\] out of range: backbone 'tf_efficientnet_lite0' has 5"):
        create_retrieval_model(weights=None, pool_stages=[2, 5])


def test_flip_average_embeds_an_image_and_its_mirror_alike():
    model = create_retrieval_model(weights=None, pooling="gem", embedding_dim=8, flip_average=True).eval()
    x = images(2, 64)
    with torch.no_grad():
        both = (model.features(x) + model.features(x.flip(-1))) / 2
        assert_close(model(x), model.embed_features(both))
        assert_close(model(x.flip(-1)), model(x), rtol=1e-5, atol=1e-6)
        plain = create_retrieval_model(weights=None, pooling="gem", embedding_dim=8).eval()
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(plain(x), model(x), atol=1e-4)
        model.train()  # training steps embed the one view given (the augmentation mirrors at random)
        assert_close(model(x), model.embed_features(model.features(x)))


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet18"])
def test_freeze_stages_fixes_the_backbone_up_to_a_stage(backbone):
    model = create_retrieval_model(backbone, weights=None, embedding_dim=4)
    last = model.backbone.feature_info[2]["module"]  # lite0: blocks.2 (stride 8); resnet18: layer2
    model.freeze_stages(3)
    names = [name for name, _ in model.backbone.named_parameters()]
    end = max(i for i, name in enumerate(names) if name.startswith(last + "."))
    trainable = [p.requires_grad for _, p in model.backbone.named_parameters()]
    assert not any(trainable[:end + 1]) and all(trainable[end + 1:])
    model(images(2, 64)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters() if not p.requires_grad)
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)
    model.freeze_stages(0)
    assert [p.requires_grad for p in model.backbone.parameters()] == trainable
    with pytest.raises(ValueError, match=r"frozen_stages must be in 0\.\.5 \(backbone '" + backbone):
        model.freeze_stages(6)


def test_gem_against_average_and_maximum():
    x = torch.rand(2, 5, 3, 4) + 0.1
    avg = POOLINGS.get("avg")()
    assert_close(avg(x), x.mean(dim=(2, 3)))
    assert_close(GeM(p=1.0)(x), x.mean(dim=(2, 3)))
    assert_close(GeM(p=3.0)(x), (x ** 3).mean(dim=(2, 3)) ** (1 / 3))
    assert_close(GeM(p=200.0)(x), x.amax(dim=(2, 3)), rtol=0.02, atol=0.0)
    gem = GeM()
    assert not torch.allclose(gem(x), avg(x))
    assert bool((gem(x) >= avg(x) - 1e-6).all())  # power mean inequality
    gem(x).sum().backward()
    assert gem.p.requires_grad and gem.p.grad is not None and float(gem.p.grad.abs()) > 0
    with pytest.raises(ValueError, match="p > 0"):
        GeM(p=0.0)


def naive_gem(x: torch.Tensor, p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, C, h, w) → (B, C) by loops over the channels, in float64 logarithms (eps^p underflows even there)."""
    return torch.stack([torch.stack([((p * c.double().clamp(min=eps).log()).logsumexp((0, 1)) - math.log(c.numel()))
                                     .div(p).exp() for c in image]) for image in x])


@pytest.mark.parametrize("p", [3.0, 20.0, 60.0, 150.0])
def test_gem_against_a_loop_for_large_and_small_activations_and_powers(p):
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 6  # ReLU6 range: 6^60 overflows float32
    x[0, 1] = 0.0  # a dead channel: eps^p underflows
    x[1, 2] = x[1, 2] * 1e-3 - 0.002  # tiny and negative activations
    gem, power = GeM(p=p), torch.tensor(p, dtype=torch.float64, requires_grad=True)
    out, reference = gem(x), naive_gem(x, power)
    assert_close(out.double(), reference.detach(), rtol=1e-5, atol=0)
    out.sum().backward()
    reference.sum().backward()
    assert_close(gem.p.grad.double(), power.grad, rtol=1e-3, atol=1e-9)  # the learnable power trains


def test_gem_is_stable_in_half_precision():
    x = torch.full((1, 2, 4, 4), 60.0, dtype=torch.float16)  # 60³ overflows float16
    out = GeM()(x)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full((1, 2), 60.0), rtol=1e-4)


def test_frozen_batchnorm_stays_frozen_in_train_mode():
    model = create_retrieval_model(weights=None, freeze_bn=True, embedding_dim=8).train()
    batch_norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert batch_norms and not any(bn.training for bn in batch_norms)
    assert model.training and model.embedding.training
    assert not any(p.requires_grad for bn in batch_norms for p in bn.parameters())
    trainable = {id(p) for p in model.feature_parameters()}
    assert trainable and not trainable & {id(p) for bn in batch_norms for p in bn.parameters()}
    before = bn_statistics(model)
    model(images()).sum().backward()
    after = bn_statistics(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.backbone.conv_stem.weight.grad is not None


def test_batchnorm_trains_without_freezing():
    model = create_retrieval_model(weights=None, embedding_dim=8).train()
    before = bn_statistics(model)
    model(images())
    after = bn_statistics(model)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_parameter_groups_split_all_parameters(gem_model):
    groups = [{id(p) for p in gem_model.feature_parameters()}, {id(p) for p in gem_model.head_parameters()}]
    assert not groups[0] & groups[1]
    assert groups[0] | groups[1] == {id(p) for p in gem_model.parameters()}
    assert id(gem_model.pooling.p) in groups[0] and id(gem_model.embedding.weight) in groups[1]


def test_offline_imagenet_weights():
    model = create_retrieval_model()
    reference = load_imagenet_state_dict("tf_efficientnet_lite0")
    state = model.backbone.state_dict()
    assert set(state) <= set(reference) and len(state) > 100
    assert all(torch.equal(value, reference[key]) for key, value in state.items())


def test_the_tag_of_the_shipped_weights_names_the_same_offline_weights(no_network):
    plain, tagged = create_retrieval_model(), create_retrieval_model("tf_efficientnet_lite0.in1k")
    a, b = plain.backbone.state_dict(), tagged.backbone.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_without_network_the_download_error_suggests_backbone_names(no_network):
    with pytest.raises(WeightsDownloadError, match="offline ImageNet weights: tf_efficientnet_lite0, ") as err:
        create_retrieval_model("resnet18")
    assert "tu-" not in str(err.value)  # the backbone option takes timm names, not smp's


def test_images_are_normalised_inside():
    model = create_retrieval_model(weights=None, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    seen = []
    model.backbone.conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = images()
    model(x)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert_close(seen[0], expected)


def test_input_checks(gem_model):
    with pytest.raises(TypeError, match="float in \\[0, 1\\]"):
        gem_model((images() * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, H, W\)"):
        gem_model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"features must have shape \(B, 1280\)"):
        gem_model.embed_features(torch.rand(2, 64))


def test_factory_errors():
    with pytest.raises(KeyError, match="unknown pooling 'max'; valid names: avg, gem"):
        create_retrieval_model(weights=None, pooling="max")
    with pytest.raises(KeyError, match="unknown timm backbone 'no_such_net'.*tf_efficientnet_lite0"):
        create_retrieval_model("no_such_net", weights=None)
    with pytest.raises(ValueError, match="embedding_dim must be >= 0"):
        create_retrieval_model(weights=None, embedding_dim=-1)


def test_save_load_round_trip(tmp_path):
    model = create_retrieval_model(weights=None, pooling="gem", embedding_dim=12, freeze_bn=True, pool_stages=[4],
                                   flip_average=True)
    with torch.no_grad():
        model.pooling.p.fill_(2.5)
        model.backbone.bn1.running_mean.add_(0.3)
    path = tmp_path / "runs" / "model.safetensors"
    model.save(path, metadata={"epoch": "4", "R@1": "81.5"})
    loaded = load_retrieval_model(path)
    assert loaded.config == model.config and loaded.freeze_bn and loaded.pooling.p.item() == 2.5
    assert loaded.pool_stages == [4] and loaded.flip_average and loaded.feature_dim == 1600
    assert checkpoint_metadata(path) == {"epoch": "4", "R@1": "81.5"}
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary file left
    x = images(2)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_pickle_disguised_as_model_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(malicious_pickle(marker))
    with pytest.raises(ValueError, match="not a safetensors model file"):
        load_retrieval_model(path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_retrieval_model(tmp_path / "absent.safetensors")


def test_other_model_files_are_refused(tmp_path):
    path = tmp_path / "coseg.safetensors"
    write_checkpoint(path, {"w": torch.zeros(1)}, {"arch": "unet", "encoder": "tu-tf_efficientnet_lite0"})
    with pytest.raises(ValueError, match="coseg.safetensors: its model config has an unknown field 'arch'"):
        load_retrieval_model(path)
    model = create_retrieval_model(weights=None, embedding_dim=4)
    write_checkpoint(path, {"embedding.weight": torch.zeros(4, 1280)}, model.config)
    with pytest.raises(ValueError, match="weights do not fit the model"):
        load_retrieval_model(path)
