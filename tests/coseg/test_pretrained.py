"""Offline ImageNet weights: mapping onto timm names (checked by classifying a cat), encoder subsets, local files,
strict errors, and the clear error when weights would need a network."""
from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from skimage import data

from coseg.data import make_synthetic_coseg
from coseg.models import create_model, encoder_normalization, load_encoder_weights, load_imagenet_state_dict
from coseg.models import load_timm_weights, load_weights_file, offline_encoders
from tests.coseg.malicious import malicious_pickle

LITE0 = "tf_efficientnet_lite0"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def random_timm_state(name: str = LITE0) -> dict[str, torch.Tensor]:
    return timm.create_model(name).state_dict()


def lite0_encoder() -> torch.nn.Module:
    return smp.encoders.get_encoder("tu-" + LITE0, weights=None)


@pytest.mark.parametrize("name", [LITE0, pytest.param("tf_efficientnet_lite1", marks=pytest.mark.slow),
                                  pytest.param("tf_efficientnet_lite2", marks=pytest.mark.slow)])
def test_packaged_weights_classify_a_cat(name):
    model = timm.create_model(name).eval()
    load_timm_weights(model, name, "imagenet")
    size = model.pretrained_cfg["input_size"][-2:]
    image = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in encoder_normalization("tu-" + name))
    with torch.no_grad():
        probabilities = model((image - mean) / std).softmax(dim=1)[0]
    assert int(probabilities.argmax()) in CAT_CLASSES
    assert float(probabilities[CAT_CLASSES.start:CAT_CLASSES.stop].sum()) > 0.5


def test_lite_normalisation_is_one_half():
    for encoder in offline_encoders():
        assert encoder_normalization(encoder) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_smp_encoder_gets_the_full_models_weights_bit_for_bit():
    full = timm.create_model(LITE0)
    load_timm_weights(full, LITE0, "imagenet")
    encoder = lite0_encoder()
    load_encoder_weights(encoder, "imagenet")
    full_state, encoder_state = full.state_dict(), encoder.state_dict()
    assert len(encoder_state) == 288 and all(key.startswith("model.") for key in encoder_state)
    for key, value in encoder_state.items():
        assert torch.equal(value, full_state[key[len("model."):]]), key
    dropped = set(full_state) - {key[len("model."):] for key in encoder_state}
    assert dropped == {f"{m}.{p}" for m in ("bn2",) for p in ("weight", "bias", "running_mean", "running_var",
                                                               "num_batches_tracked")} | {
        "conv_head.weight", "classifier.weight", "classifier.bias"}


def test_features_only_and_headless_timm_models_load():
    reference = load_imagenet_state_dict(LITE0)
    for model in (timm.create_model(LITE0, features_only=True), timm.create_model(LITE0, num_classes=0)):
        load_timm_weights(model, LITE0, "imagenet")
        for key, value in model.state_dict().items():
            assert torch.equal(value, reference[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".PTH", ".SafeTensors"])  # upper case was refused
def test_local_weights_file_round_trip(tmp_path, suffix):
    state = random_timm_state()
    path = tmp_path / f"lite0{suffix}"
    if suffix.lower() == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    encoder = lite0_encoder()
    load_encoder_weights(encoder, path)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[key[len("model."):]]), key


def test_local_file_for_a_non_timm_smp_encoder(tmp_path):
    source = smp.encoders.get_encoder("resnet18", weights=None)
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), path)
    model = create_model("unet", encoder="resnet18", weights=path)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_weights_that_do_not_fit_are_listed(tmp_path):
    state = random_timm_state()
    state["bogus.weight"] = torch.zeros(1)
    del state["conv_stem.weight"]
    state["bn1.weight"] = torch.zeros(7)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(ValueError) as err:
        load_encoder_weights(lite0_encoder(), path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: conv_stem.weight" in message
    assert "unexpected keys: bogus.weight" in message
    assert "bn1.weight (7,) vs (32,)" in message


def test_full_model_is_strict_about_its_own_keys(tmp_path):
    state = random_timm_state()
    del state["classifier.bias"]
    path = tmp_path / "headless.safetensors"
    save_file(state, path)
    with pytest.raises(ValueError, match="missing keys: classifier.bias"):
        load_timm_weights(timm.create_model(LITE0), LITE0, path)


def test_malicious_pickle_is_live(tmp_path):
    pickle.loads(malicious_pickle(tmp_path / "control"))
    assert (tmp_path / "control").exists()


def test_pickled_weights_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    path.write_bytes(malicious_pickle(marker))
    with pytest.raises(ValueError, match="weights.pth"):
        load_weights_file(path)
    assert not marker.exists()


def test_missing_and_unknown_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_weights_file(tmp_path / "nothing.pth")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"\0")
    with pytest.raises(ValueError, match="weights.npz"):
        load_weights_file(odd)


@pytest.mark.parametrize("content", [b"hello", b"\x86\x13", b"x\n"], ids=["text", "short pickle", "operand"])
def test_unreadable_weights_file_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "weights.pth"  # torch.load raises KeyError / IndexError / UnpicklingError on these bytes
    path.write_bytes(content)
    with pytest.raises(ValueError, match="weights.pth: cannot read weights") as err:
        load_weights_file(path)
    message = str(err.value)  # one line, without torch's advice to load the file unsafely (was: its whole text)
    assert "\n" not in message and "weights_only" not in message
    if content == b"x\n":
        assert message.endswith("cannot read weights (not a file torch.save wrote, or a damaged one: Unsupported "
                                "operand 120)")


def test_no_offline_weights_for_other_timm_models():
    with pytest.raises(KeyError, match="tf_efficientnet_lite0"):
        load_imagenet_state_dict("resnet18")


@pytest.mark.parametrize("encoder", ["tu-resnet18", "resnet18"])
def test_imagenet_weights_without_network_give_a_clear_error(no_network, encoder, tmp_path):
    from click.testing import CliRunner

    from apps.cli import main
    from coseg.models.pretrained import WeightsDownloadError

    with pytest.raises(WeightsDownloadError) as err:
        create_model("unet", encoder=encoder, weights="imagenet")
    message = str(err.value)
    assert encoder in message and "local weights file" in message and "tu-tf_efficientnet_lite0" in message
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32)
    result = CliRunner().invoke(main, ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--encoder",
                                       encoder, "--members", "1", "--epochs", "1", "--image-size", "64",
                                       "--val-fraction", "0", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output  # one line, as other expected failures
    assert f"Error: could not download ImageNet weights for encoder '{encoder}'" in result.output


@pytest.mark.parametrize("prefix", ["module.", "model.", "module.model."])
def test_weights_of_a_ddp_wrapper_or_of_the_smp_encoder_itself_load(tmp_path, prefix):
    state = random_timm_state()  # "module.": saved from DDP; "model.": an smp tu- encoder's own state dict
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}}, path)
    encoder = lite0_encoder()
    load_encoder_weights(encoder, path)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[key[len("model."):]]), key


def test_weights_without_batchnorm_counters_load(tmp_path):
    state = {k: v for k, v in random_timm_state().items() if not k.endswith("num_batches_tracked")}  # older files
    path = tmp_path / "old.safetensors"
    save_file(state, path)
    encoder = lite0_encoder()
    load_encoder_weights(encoder, path)
    assert torch.equal(encoder.model.conv_stem.weight, state["conv_stem.weight"])
    assert torch.equal(encoder.model.bn1.running_var, state["bn1.running_var"])


def test_the_tag_of_the_shipped_weights_names_the_same_offline_weights(no_network):
    plain = create_model("unet", encoder="tu-tf_efficientnet_lite0", weights="imagenet", group_levels=1,
                         semantic_prior=True)
    tagged = create_model("unet", encoder="tu-tf_efficientnet_lite0.in1k", weights="imagenet", group_levels=1,
                          semantic_prior=True)
    a, b = plain.state_dict(), tagged.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if "encoder" in k or "prior" in k)
    with pytest.raises(KeyError, match="no offline ImageNet weights for timm model 'tf_efficientnet_lite0.ra_in1k'"):
        load_imagenet_state_dict("tf_efficientnet_lite0.ra_in1k")  # another tag: other weights


def torchvision_resnet18_file(tmp_path, **changes) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision ResNet-18 classifier's state dict (with its ``fc.`` head) saved as a .pth; ``changes``: keys
    to replace (None: delete)."""
    import torchvision

    state = torchvision.models.resnet18().state_dict()
    for key, value in changes.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(state, path)
    return path, state


def test_a_classifiers_head_is_left_out_and_said_once(tmp_path, caplog):
    path, state = torchvision_resnet18_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="coseg.models.pretrained"):
        model = create_model("unet", encoder="resnet18", weights=path)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: left out the classifier keys fc.weight, fc.bias (ResNetEncoder has no classifier)"]


@pytest.mark.parametrize("changes, words", [
    ({"layer1.0.conv1.weight": None}, "missing keys: layer1.0.conv1.weight; unexpected keys: fc.weight, fc.bias"),
    ({"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)},
     r"shape mismatches \(given vs model\): layer1.0.conv1.weight \(64, 64, 1, 1\) vs \(64, 64, 3, 3\)"),
    ({"extra.weight": torch.zeros(1)}, "unexpected keys: extra.weight$"),
], ids=["missing", "shape", "unknown"])
def test_a_classifier_file_that_does_not_fit_the_encoder_is_still_refused(tmp_path, caplog, changes, words):
    path, _ = torchvision_resnet18_file(tmp_path, **changes)
    with pytest.raises(ValueError, match=f"resnet18_imagenet.pth does not fit ResNetEncoder: {words}"):
        load_encoder_weights(smp.encoders.get_encoder("resnet18", weights=None), path)
    assert not caplog.records


def test_weights_file_with_a_name_that_is_not_utf8(tmp_path):
    path = tmp_path / os.fsdecode(b"lite0-\xe9.safetensors")
    state = random_timm_state()
    try:
        save_file(state, tmp_path / "plain.safetensors")
        os.replace(tmp_path / "plain.safetensors", path)
    except (OSError, UnicodeError):
        pytest.skip("this file system cannot hold a file name that is not UTF-8")
    encoder = lite0_encoder()
    load_encoder_weights(encoder, path)  # was: "Path ... is not valid UTF-8"
    assert torch.equal(encoder.model.conv_stem.weight, state["conv_stem.weight"])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"lite0-\\xe9.safetensors: cannot read weights") as err:
        load_encoder_weights(encoder, path)
    str(err.value).encode("utf-8")  # printable: no lone surrogate


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    """A .pth (a zip) whose storage is deflated zeros: 64 MB from about 64 kB."""
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(4)}, plain)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename.endswith("data/0"):
                data = bytes(64 * 2 ** 20)
            target.writestr(member.filename, data)
    with pytest.raises(ValueError, match=r"bomb.pth: its zip members would unpack to \d+ bytes from \d+"):
        load_weights_file(bomb)
    deflated = tmp_path / "deflated.pth"  # the same file deflated without a bomb loads
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member))
    assert torch.equal(load_weights_file(deflated)["w"], torch.zeros(4))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_empty_and_truncated_weights_files_give_one_line(tmp_path, suffix):
    path = tmp_path / f"lite0{suffix}"
    state = random_timm_state()
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    data = path.read_bytes()
    for content in (b"", data[: len(data) // 2]):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"lite0{suffix}: cannot read weights") as err:
            load_weights_file(path)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", ["model", "arguments"])
def test_a_pickled_model_or_arguments_are_refused_in_one_line_saying_what_to_save(tmp_path, content):
    import argparse

    path = tmp_path / "lite0.pth"  # torch.save(model), or a training script's checkpoint with its argparse arguments
    saved = (timm.create_model(LITE0) if content == "model"
             else {"state_dict": random_timm_state(), "args": argparse.Namespace(lr=0.1)})
    torch.save(saved, path)
    with pytest.raises(ValueError, match=r"lite0.pth: refused to load: it holds pickled objects other than tensors "
                                         r"\(.*(EfficientNet|Namespace).*\); save the model's state_dict\(\)") as err:
        load_weights_file(path)
    message = str(err.value)
    assert "\n" not in message and "\x1b" not in message and "weights_only" not in message


def test_a_folder_given_as_the_weights_file_is_named_as_a_folder(tmp_path):
    (tmp_path / "weights").mkdir()  # "weights file not found" said it was not there
    with pytest.raises(ValueError, match=r"weights: a folder, not a weights file; give the file itself"):
        load_weights_file(tmp_path / "weights")
