"""Semantic prior: CAMs of a group's common ImageNet classes, checked against loops, against timm's full classifier
(a cat is found where the cat is), and inside the model (order invariance, chunked groups, model files); the frozen
prior encoder keeps ImageNet's maps whatever happens to the segmentation encoder."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data

from coseg.models import create_model, load_model, load_timm_weights
from coseg.models.semantic_prior import SemanticPrior, build_semantic_prior, group_mean
from tests.helpers import assert_close

LITE0 = "tf_efficientnet_lite0"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def naive_cam(features, class_weights, weight):
    """Loops: per image, per pixel Σ_c w_c · <W_c, f(pixel)>, then scaled to [0, 1] over the image."""
    b, c, h, w = features.shape
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                out[i, y, x] = sum(float(class_weights[i, k]) * float(weight[k] @ features[i, :, y, x])
                                   for k in range(weight.shape[0]))
        out[i] = (out[i] - out[i].min()) / (out[i].max() - out[i].min())
    return out


def test_group_mean_matches_loops():
    values = torch.rand(6, 4, dtype=torch.float64)
    groups = torch.tensor([3, 1, 3, 3, 7, 1])
    expected = torch.stack([values[groups == g].mean(0) for g in groups])
    assert_close(group_mean(values, groups), expected)


def test_maps_match_loops_and_probabilities_pool_before_the_classifier():
    torch.manual_seed(0)
    classifier = torch.nn.Linear(5, 3).double()
    prior = SemanticPrior(torch.nn.Identity(), classifier)
    features = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    group = torch.softmax(torch.randn(2, 3, dtype=torch.float64), dim=1)
    maps = prior.maps(features, group)
    assert maps.shape == (2, 2, 3, 4)
    assert_close(maps[:, 0].double(), naive_cam(features, group, classifier.weight.detach()))
    own = torch.softmax(classifier(features.mean(dim=(2, 3))), dim=1)
    assert_close(prior.probabilities(features), own)
    assert_close(maps[:, 1].double(), naive_cam(features, own, classifier.weight.detach()))


def test_prior_is_frozen_and_stays_in_eval_mode():
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1, semantic_prior=True)
    model.train()
    assert not model.semantic_prior.training
    assert not any(p.requires_grad for p in model.semantic_prior.parameters())
    out = model(torch.rand(2, 3, 64, 64), torch.tensor([0, 0]))
    out.mask_logits.sum().backward()
    assert all(p.grad is None for p in model.semantic_prior.parameters())


def cat_on_grey() -> torch.Tensor:
    """(1, 3, 224, 448): skimage's chelsea on the right half of a plain grey image."""
    cat = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    image = torch.full((1, 3, 224, 448), 0.5)
    image[..., 224:] = F.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return image


def test_prior_of_the_encoder_is_timms_classifier_and_finds_the_cat():
    """The prior reads the same class probabilities as timm's full ImageNet model from the (smp) encoder's
    features, and the CAM of the image's classes is high where the cat is: skimage's chelsea pasted on the right
    half of a plain grey image."""
    full = timm.create_model(LITE0).eval()
    load_timm_weights(full, LITE0, "imagenet")
    model = create_model("unet", weights="imagenet", embedding_dim=4, group_levels=1, semantic_prior=True).eval()
    image = cat_on_grey()
    with torch.no_grad():
        expected = full((image - 0.5) / 0.5).softmax(dim=1)
        features = model.semantic_prior.class_features(model.encode(image)[-1], None)
        probabilities = model.semantic_prior.probabilities(features)
        cam = model.semantic_prior.maps(features, probabilities)[0, 0]
    assert_close(probabilities, expected, atol=1e-5, rtol=1e-4)
    assert int(probabilities.argmax()) in CAT_CLASSES
    half = cam.shape[1] // 2
    assert float(cam[:, half:].mean()) > float(cam[:, :half].mean()) + 0.3


def scramble_encoder(model) -> None:
    """What fine-tuning could do at worst to the segmentation encoder: every weight replaced by noise."""
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.copy_(torch.randn_like(p) * p.std().clamp(min=1e-3))


def test_frozen_prior_reads_its_own_imagenet_encoder_not_the_fine_tuned_one():
    """With ``frozen_prior`` the maps come from a frozen copy of the ImageNet encoder: scrambling the segmentation
    encoder leaves the class probabilities and maps exactly as they were (and the cat is still found); the shared
    prior's maps move with it."""
    image = cat_on_grey()
    frozen = create_model("unet", weights="imagenet", embedding_dim=4, group_levels=1, semantic_prior=True,
                          frozen_prior=True).eval()
    shared = create_model("unet", weights="imagenet", embedding_dim=4, group_levels=1, semantic_prior=True).eval()

    def prior(model):
        with torch.no_grad():
            features = model._class_features(image, model.encode(image)[-1])
            return model.semantic_prior.probabilities(features), model._prior_maps(features, torch.zeros(1).long())

    before, before_shared = prior(frozen), prior(shared)
    assert_close(before[0], before_shared[0], atol=1e-6, rtol=1e-5)  # the same ImageNet encoder to begin with
    assert_close(before[1], before_shared[1], atol=1e-5, rtol=1e-4)
    scramble_encoder(frozen)
    scramble_encoder(shared)
    after, after_shared = prior(frozen), prior(shared)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert int(after[0].argmax()) in CAT_CLASSES
    cam = after[1][0, 0]
    assert float(cam[:, cam.shape[1] // 2:].mean()) > float(cam[:, :cam.shape[1] // 2].mean()) + 0.3
    assert not torch.allclose(after_shared[1], before_shared[1], atol=1e-2)


def test_frozen_prior_encoder_does_not_train_and_keeps_its_statistics():
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1, semantic_prior=True,
                         frozen_prior=True).train()
    trunk = model.semantic_prior.trunk
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    assert not trunk.training and not any(p.requires_grad for p in trunk.parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    encoder_before = [p.clone() for p in model.encoder.parameters()]
    for _ in range(2):
        model(torch.rand(4, 3, 64, 64), torch.tensor([0, 0, 1, 1])).mask_logits.mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(p.grad is None for p in trunk.parameters())
    assert all(torch.equal(v, state[k]) for k, v in trunk.state_dict().items())  # incl. BatchNorm statistics
    assert any(not torch.equal(a, b) for a, b in zip(model.encoder.parameters(), encoder_before))


def test_frozen_prior_needs_the_prior():
    with pytest.raises(ValueError, match="needs semantic_prior=True"):
        create_model("unet", weights=None, group_levels=1, semantic_prior=False, frozen_prior=True)


def with_active_fusion(model):
    torch.manual_seed(1)
    for module in model.group_consensus:
        torch.nn.init.normal_(module.fuse[-1].weight, std=0.1)
    return model.eval()


@pytest.mark.parametrize("frozen_prior", [False, True])
def test_model_with_prior_is_order_invariant_and_chunks_agree(frozen_prior):
    model = with_active_fusion(create_model("unet", weights="imagenet", embedding_dim=4, group_levels=2,
                                            semantic_prior=True, frozen_prior=frozen_prior))
    if frozen_prior:
        scramble_encoder(model)  # the two encoders differ, as after fine-tuning
    torch.manual_seed(0)
    x = torch.rand(5, 3, 64, 64)
    groups = torch.tensor([0, 0, 1, 0, 1])
    with torch.no_grad():
        out = model(x, groups).mask_logits
        perm = torch.tensor([3, 1, 4, 0, 2])
        assert_close(model(x[perm], groups[perm]).mask_logits, out[perm], atol=1e-5, rtol=1e-4)
    whole = model.predict_group(x, chunk_size=16)
    assert_close(model.predict_group(x, chunk_size=2), whole, atol=1e-5, rtol=1e-4)
    assert_close(whole, model.predict(x, torch.zeros(5, dtype=torch.long)))
    assert not torch.allclose(model.predict(x, torch.arange(5)), whole)  # the group mixture of classes matters


@pytest.mark.parametrize("frozen_prior", [False, True])
def test_model_file_keeps_the_prior(tmp_path, frozen_prior):
    model = with_active_fusion(create_model("unet", weights="imagenet", embedding_dim=4, group_levels=1,
                                            semantic_prior=True, frozen_prior=frozen_prior))
    if frozen_prior:
        scramble_encoder(model)
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors").eval()  # rebuilt with weights=None: the file holds the prior
    assert loaded.config["semantic_prior"] is True and loaded.config["frozen_prior"] is frozen_prior
    x, groups = torch.rand(3, 3, 64, 64), torch.tensor([0, 0, 0])
    with torch.no_grad():
        assert torch.equal(loaded(x, groups).mask_logits, model(x, groups).mask_logits)


def test_clear_errors():
    with pytest.raises(ValueError, match="needs group_levels >= 1"):
        create_model("unet", weights=None, group_levels=0, semantic_prior=True)
    with pytest.raises(ValueError, match="needs a timm encoder"):
        build_semantic_prior("resnet18", 512, None)


@pytest.mark.parametrize("encoder, words", [
    ("tu-mobilenetv3_small_100", "takes 1024 channels.*576"),  # its conv_head comes after the pooling
    ("tu-convnext_atto", "does more than average-pool"),  # a LayerNorm after the pooling
])
def test_encoders_whose_head_cannot_be_read_per_pixel_are_refused(encoder, words):
    with pytest.raises(ValueError, match=f"'{encoder}' {words}.*not supported"):
        create_model("unet", encoder=encoder, weights=None, group_levels=1, semantic_prior=True)


@pytest.mark.parametrize("encoder", ["tu-resnet18", "tu-regnety_002"])
def test_prior_of_other_timm_encoders_is_their_classifier(encoder):
    model = create_model("unet", encoder=encoder, weights=None, group_levels=1, semantic_prior=True).eval()
    timm_model = timm.create_model(encoder[len("tu-"):]).eval()
    timm_model.load_state_dict({**timm_model.state_dict(), **model.encoder.model.state_dict(),
                                **{k.replace("classifier.", timm_model.default_cfg["classifier"] + "."): v
                                   for k, v in model.semantic_prior.state_dict().items()
                                   if k.startswith("classifier.")}})
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        deepest = model.encode(x)[-1]
        probabilities = model.semantic_prior.probabilities(model.semantic_prior.class_features(deepest, None))
        assert_close(probabilities, torch.softmax(timm_model(model.normalize(x)), dim=1), atol=1e-5, rtol=1e-4)


def test_weights_file_without_classifier_is_refused(tmp_path):
    state = {k: v for k, v in timm.create_model(LITE0).state_dict().items() if not k.startswith("classifier")}
    save_file(state, tmp_path / "headless.safetensors")
    with pytest.raises(ValueError, match="missing keys: classifier"):
        create_model("unet", weights=tmp_path / "headless.safetensors", group_levels=1, semantic_prior=True)


def test_an_encoder_weights_file_with_the_default_prior_says_the_prior_needs_the_classifier(tmp_path):
    encoder = create_model("unet", weights=None).encoder.state_dict()  # the smp encoder's own state dict
    save_file(encoder, tmp_path / "encoder.safetensors")
    assert create_model("unet", weights=tmp_path / "encoder.safetensors").encoder.state_dict().keys() == encoder.keys()
    with pytest.raises(ValueError, match=r"semantic prior: .*encoder.safetensors does not fit .*missing keys: "
                                         r"conv_head.*classifier.*--no-semantic-prior"):
        create_model("unet", weights=tmp_path / "encoder.safetensors", group_levels=2, semantic_prior=True)
