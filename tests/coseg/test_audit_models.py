"""Audit of the co-segmentation model code as a user meets it: ensembles joined in Python, the modes a model is left
in, frozen encoder statistics, decoders that pool each image to 1×1 before a BatchNorm layer, a model file given as
encoder weights and the reference limit."""
import numpy as np
import pytest
import torch
from torch import nn

from coseg.models import CosegEnsemble, GroupStatistics, create_model, load_ensemble, load_model
from coseg.models import cosegnet
from tests.helpers import assert_close

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def group_model(seed: int = 0, arch: str = "unet") -> cosegnet.CosegNet:
    torch.manual_seed(seed)
    model = create_model(arch, encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        nn.init.normal_(module.fuse[-1].weight, std=0.3)
    return model.eval()


def test_an_ensemble_given_as_a_member_gives_its_members_and_its_file_loads(tmp_path):
    """``CosegEnsemble([load_model("ens.safetensors"), other])`` (joining a trained ensemble with another model in
    Python): was an ensemble nested in an ensemble, whose model file ``load_model`` refused ('unknown field
    members[0].members'), whose large groups failed (no ``chunk_keys``) and whose mean weighted the inner
    ensemble's models by half."""
    a, b, c = group_model(0), group_model(1), group_model(2)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    joined = CosegEnsemble([CosegEnsemble([a, b]), c])
    assert list(joined.members) == [a, b, c]
    expected = torch.stack([m.predict_group(x, chunk_size=2) for m in (a, b, c)]).mean(0)
    assert_close(joined.predict_group(x, chunk_size=2), expected, **TOLERANCE)
    context = joined.group_context(x.split(2))
    streamed = torch.cat([joined.predict_chunk(chunk, context, range(2 * i, 2 * i + 2))
                          for i, chunk in enumerate(x.split(2))])
    assert_close(streamed, expected, **TOLERANCE)
    joined.save(tmp_path / "joined.safetensors")
    loaded = load_model(tmp_path / "joined.safetensors").eval()
    assert len(loaded.members) == 3
    assert_close(loaded.predict_group(x, chunk_size=2), expected, **TOLERANCE)
    CosegEnsemble([a, b]).save(tmp_path / "inner.safetensors")
    c.save(tmp_path / "c.safetensors")
    ensemble, _ = load_ensemble([tmp_path / "inner.safetensors", tmp_path / "c.safetensors"])  # as before
    assert len(ensemble.members) == 3


def test_an_ensemble_of_something_else_is_refused_by_name():
    with pytest.raises(TypeError, match="co-segmentation models .*got Linear"):
        CosegEnsemble([group_model(), nn.Linear(2, 2)])


def test_unfreezing_the_encoder_keeps_its_frozen_statistics():
    """freeze_encoder_statistics, freeze_encoder, unfreeze_encoder: the encoder's BatchNorm layers were put back in
    training mode, their ImageNet statistics then updated by every batch although still said to be frozen."""
    model = group_model().train()
    model.freeze_encoder_statistics()
    model.freeze_encoder()
    model.unfreeze_encoder()
    layers = [m for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert layers and not any(m.training for m in layers)
    assert model.encoder.training and all(p.requires_grad for p in model.encoder.parameters())
    before = [m.running_mean.clone() for m in layers]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(m.running_mean, b) for m, b in zip(layers, before))
    model.train()  # the model's own train() keeps them so too
    assert not any(m.training for m in layers)


@pytest.mark.parametrize("call", ["predict", "predict_group", "predict_chunk"])
def test_predicting_leaves_every_module_in_the_mode_it_was_found_in(call):
    """A model partly in eval mode (here its decoder and one consensus module, in a training model) was left
    wholly in training mode after a prediction, or wholly in eval mode the other way round."""
    model = group_model().train()
    model.decoder.eval()
    model.group_consensus[0].fuse.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    if call == "predict":
        model.predict(x, flip=True)
    elif call == "predict_group":
        model.predict_group(x, chunk_size=2, statistics=GroupStatistics())
    else:
        model.predict_chunk(x, model.group_context([x]), range(3))
    assert {name: m.training for name, m in model.named_modules()} == modes


@pytest.mark.parametrize("arch", ["deeplabv3plus", "upernet"])
def test_a_decoder_that_pools_each_image_needs_two_images_and_says_so(arch):
    """DeepLabV3+'s ASPP and UPerNet's pyramid pooling normalise each image's features pooled to 1×1: a training
    batch of one image of any size, or group statistics of a group of one, failed in torch ('Expected more than 1
    value per channel when training'), which stopped a whole ``predict --group-statistics`` run instead of
    skipping the group's image (:class:`GroupTooSmall`)."""
    model = group_model(arch=arch)
    assert model.pools_before_batchnorm
    one = torch.rand(1, 3, 128, 128)
    with pytest.raises(cosegnet.GroupTooSmall, match=f"a group of one image, whose features the {arch} decoder"):
        model.predict_group(one, statistics=GroupStatistics())
    assert not model.training and not any(m.training for m in model.modules())
    model.train()
    with pytest.raises(ValueError, match=f"a training batch of one image, whose features the {arch} decoder pools "
                                         f"to 1×1 .* more images per batch"):
        model(one)
    model.freeze_encoder()  # the decoder still trains
    with pytest.raises(ValueError, match="a training batch of one image"):
        model(one)
    assert model(torch.rand(2, 3, 64, 64)).mask_logits.shape == (2, 1, 64, 64)


def test_other_decoders_still_train_on_one_image():
    for arch in ("unet", "fpn", "manet", "linknet"):
        model = group_model(arch=arch)
        assert not model.pools_before_batchnorm
        model.train()
        assert model(torch.rand(1, 3, 64, 64)).mask_logits.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("arch", ["deeplabv3plus", "unet"])
def test_group_statistics_in_chunks_never_pass_one_image_alone(arch, monkeypatch):
    """A group measured in chunks (large images) whose last chunk held one image: a DeepLabV3+ or UPerNet model
    failed in torch; that image now joins the chunk before (other models' chunks are as before), and the result does
    not depend on the order."""
    model = group_model(arch=arch)
    monkeypatch.setattr(cosegnet, "STATISTICS_PIXELS", 2 * 64 * 64)  # chunks of 2 images: 2, 2 and 1 of 5
    sizes = []
    decode = cosegnet.CosegNet._decoded_in_context

    def recorded(self, chunk, *args, **kwargs):
        sizes.append(len(chunk))
        return decode(self, chunk, *args, **kwargs)

    monkeypatch.setattr(cosegnet.CosegNet, "_decoded_in_context", recorded)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    stats = GroupStatistics()
    probs = model.predict_group(x, chunk_size=5, statistics=stats)
    assert sizes == ([2, 3] if arch == "deeplabv3plus" else [2, 2, 1])  # the statistics pass (prediction: one chunk)
    assert probs.shape == (5, 1, 64, 64) and bool(torch.isfinite(probs).all())
    order = torch.tensor(np.random.default_rng(0).permutation(5))
    assert_close(model.predict_group(x[order], chunk_size=3, statistics=stats)[torch.argsort(order)], probs,
                 **TOLERANCE)


def test_predict_with_group_statistics_lists_a_one_image_group_of_a_deeplab_model_and_goes_on(tmp_path):
    """``coseg predict --group-statistics`` with a DeepLabV3+ model on a folder holding a group of one image: the run
    stopped on torch's error; now that image is listed as skipped, with the reason, and the other group written."""
    from coseg.predict import predict_folder
    from tests.coseg.files import write_rgb

    rng = np.random.default_rng(0)
    for name in ("a/alone.png", "b/one.png", "b/two.png"):
        write_rgb(tmp_path / "in" / name, rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    report = predict_folder(group_model(arch="deeplabv3plus"), 64, tmp_path / "in", tmp_path / "out",
                            torch.device("cpu"), progress=False, statistics=GroupStatistics())
    assert report.written == 2 and sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["one.png", "two.png"]
    [(file, reason)] = report.skipped
    assert file.endswith("alone.png") and "a group of one image, whose features the deeplabv3plus decoder" in reason


def test_a_model_file_given_as_encoder_weights_is_named_as_such(tmp_path):
    """``--weights runs/x/best.safetensors`` (a trained model to start from) listed a hundred missing and unexpected
    keys ('missing keys: conv1.weight, ...; unexpected keys: encoder.model.layer2...'); now one line says what the
    file is, for the co-segmentation and the retrieval builders alike. Encoder weights saved alone still load."""
    from safetensors.torch import save_file

    from apps.retrieval.model import create_retrieval_model

    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4)
    model.save(tmp_path / "best.safetensors")
    with pytest.raises(ValueError, match=r"best\.safetensors is a co-segmentation model file \(a whole model and its "
                                         r"config, as a run saves it\), not weights for an encoder"):
        create_model("unet", encoder="tu-resnet18", weights=tmp_path / "best.safetensors", embedding_dim=4)
    with pytest.raises(ValueError, match="is a co-segmentation model file"):
        create_retrieval_model("resnet18", weights=tmp_path / "best.safetensors")
    save_file(model.encoder.state_dict(), tmp_path / "encoder.safetensors")
    again = create_model("unet", encoder="tu-resnet18", weights=tmp_path / "encoder.safetensors", embedding_dim=4)
    assert all(torch.equal(a, b) for a, b in zip(again.encoder.state_dict().values(),
                                                 model.encoder.state_dict().values()))


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_a_reference_limit_that_is_not_a_positive_integer_is_refused_when_set(limit):
    """``model.max_references = 0`` was accepted; group statistics then measured no image and said 'a group of one
    64×64 image has a 1×1 deepest feature map' of a group of five (in ``predict``, every group's images skipped with
    that reason); 2.5 failed deep in torch."""
    model = group_model()
    with pytest.raises(ValueError, match=f"max_references must be an integer >= 1, got {limit!r}"):
        model.max_references = limit
    with pytest.raises(ValueError, match="max_references must be an integer >= 1"):
        CosegEnsemble([model]).max_references = limit
    assert model.max_references == 128
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert model.predict_group(x, statistics=GroupStatistics()).shape == (5, 1, 64, 64)


def test_joining_a_model_with_an_ensemble_that_holds_it_or_with_its_copy_is_refused(tmp_path):
    """``coseg ensemble runs/a/best.safetensors runs/a/member0/best.safetensors`` (the run's ensemble and one of its
    own members) or a model with its copy: the model's probabilities silently counted twice in the mean (only the
    same path given twice was refused). Distinct models still join."""
    from click.testing import CliRunner

    from apps.cli import main

    a, b, c = group_model(0), group_model(1), group_model(2)
    CosegEnsemble([a, b]).save(tmp_path / "best.safetensors", {"image_size": "64"})
    a.save(tmp_path / "member0.safetensors", {"image_size": "64"})
    (tmp_path / "copy.safetensors").write_bytes((tmp_path / "member0.safetensors").read_bytes())
    c.save(tmp_path / "other.safetensors", {"image_size": "64"})
    for first, second in (("best", "member0"), ("member0", "copy")):
        with pytest.raises(ValueError, match=rf"{second}\.safetensors holds a model that .*{first}\.safetensors holds "
                                             r"too \(the same config and weights\): its probabilities would count "
                                             r"twice"):
            load_ensemble([tmp_path / f"{first}.safetensors", tmp_path / f"{second}.safetensors"])
    joined_files = [str(tmp_path / name) for name in ("best.safetensors", "member0.safetensors")]
    result = CliRunner().invoke(main, ["ensemble", *joined_files, "--output", str(tmp_path / "e.safetensors")])
    assert result.exit_code == 1 and "holds a model that" in result.output
    assert not (tmp_path / "e.safetensors").exists()
    joined, size = load_ensemble([tmp_path / "best.safetensors", tmp_path / "other.safetensors"])
    assert len(joined.members) == 3 and size == 64
