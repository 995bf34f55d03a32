"""CosegNet: output shapes and unit embeddings for every registered architecture, normalisation inside, predict,
freezing, model files (round trip, no download, refusal of pickles and corrupt files), input checks."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import coseg.models.cosegnet as cosegnet
from coseg.models import ARCHITECTURES, CosegOutput, checkpoint_metadata, create_model, load_imagenet_state_dict
from coseg.models import load_model
from tests.coseg.malicious import malicious_pickle
from tests.helpers import assert_close


def images(batch: int = 2, height: int = 64, width: int = 64) -> torch.Tensor:
    return torch.rand(batch, 3, height, width)


@pytest.fixture(scope="module")
def unet() -> cosegnet.CosegNet:
    return create_model("unet", weights=None, embedding_dim=8)


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_outputs_at_input_size_with_unit_embeddings(arch):
    model = create_model(arch, weights=None, embedding_dim=5)
    out = model(images(2, 32, 64))
    assert isinstance(out, CosegOutput)
    assert out.mask_logits.shape == (2, 1, 32, 64)
    assert out.embeddings.shape == (2, 5, 8, 16)  # default embedding_stride 4
    assert bool(torch.isfinite(out.mask_logits).all())
    assert_close(out.embeddings.norm(dim=1), torch.ones(2, 8, 16))


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_embedding_stride(stride):
    model = create_model("unet", weights=None, embedding_dim=3, embedding_stride=stride)
    out = model(images(1, 64, 32))
    assert out.embeddings.shape == (1, 3, 64 // stride, 32 // stride)
    assert_close(out.embeddings.norm(dim=1), torch.ones(1, 64 // stride, 32 // stride))


def test_embedding_stride_must_divide_the_output_stride():
    with pytest.raises(ValueError, match="embedding_stride must divide"):
        create_model("unet", weights=None, embedding_stride=3)


def test_real_lite0_weights_and_normalisation():
    model = create_model("unet")
    reference = load_imagenet_state_dict("tf_efficientnet_lite0")
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, reference[key[len("model."):]]), key
    assert model.config["mean"] == [0.5] * 3 and model.config["std"] == [0.5] * 3
    out = model.eval()(images(1))
    assert_close(out.embeddings.norm(dim=1), torch.ones(1, 16, 16))


def test_images_are_normalised_inside():
    model = create_model("unet", weights=None, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = images(1)
    model(x)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert_close(seen[0], expected)


def test_predict_gives_probabilities_in_inference_mode(unet):
    unet.train()
    x = images(2)
    probabilities = unet.predict(x)
    assert unet.training
    assert probabilities.shape == (2, 1, 64, 64) and torch.is_inference(probabilities)
    assert bool(((probabilities >= 0) & (probabilities <= 1)).all())
    unet.eval()
    with torch.no_grad():
        assert_close(probabilities, torch.sigmoid(unet(x).mask_logits))


def test_freeze_encoder_freezes_only_the_encoder():
    model = create_model("unet", weights=None)
    model.freeze_encoder()
    model.train()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    rest = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    assert rest and all(p.requires_grad for p in rest)
    assert not any(m.training for m in model.encoder.modules())
    assert model.decoder.training and model.embedding_head.training
    statistics = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    out = model(images(2))
    (out.mask_logits.mean() + out.embeddings.mean()).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in rest)
    assert all(torch.equal(v, statistics[k]) for k, v in model.encoder.state_dict().items())
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert all(m.training for m in model.encoder.modules())


def test_freeze_encoder_statistics_keeps_them_and_trains_the_weights():
    from coseg.config import CosegTrainConfig
    from coseg.train import build_optimizer

    model = create_model("unet", weights=None, group_levels=1)
    build_optimizer(model, CosegTrainConfig(encoder_statistics="frozen"))
    model.eval().train()  # the flag survives mode switches
    encoder_bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    other_bn = [m for name, m in model.named_modules()
                if isinstance(m, torch.nn.BatchNorm2d) and not name.startswith("encoder.")]
    assert encoder_bn and other_bn
    assert not any(m.training for m in encoder_bn) and all(m.training for m in other_bn)
    before = [m.running_mean.clone() for m in encoder_bn], [m.running_mean.clone() for m in other_bn]
    out = model(images(4), torch.tensor([0, 0, 1, 1]))
    (out.mask_logits.mean() + out.embeddings.mean()).backward()
    assert all(torch.equal(m.running_mean, b) for m, b in zip(encoder_bn, before[0]))
    assert not any(torch.equal(m.running_mean, b) for m, b in zip(other_bn, before[1]))
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)
    assert all(p.requires_grad for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="encoder_statistics must be 'train' or 'frozen'"):
        build_optimizer(create_model("unet", weights=None), CosegTrainConfig(encoder_statistics="fixed"))


def test_channels_last_gives_the_same_outputs():
    model = create_model("unet", weights=None).eval()
    x = images(2)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert_close(out.mask_logits, expected.mask_logits, rtol=1e-4, atol=1e-4)
    assert_close(out.embeddings, expected.embeddings, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frozen_prior", [False, True])
def test_float64_images_give_the_float32_outputs(frozen_prior):
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1,
                         semantic_prior=True, frozen_prior=frozen_prior).eval()
    x = images(3)
    with torch.no_grad():
        expected = model(x, torch.zeros(3, dtype=torch.long))
        out = model(x.double(), torch.zeros(3, dtype=torch.long))
    assert out.mask_logits.dtype == torch.float32
    assert_close(out.mask_logits, expected.mask_logits, rtol=1e-5, atol=1e-5)
    assert_close(model.predict_group(x.double(), chunk_size=2), model.predict_group(x, chunk_size=2),
                 rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["unet", "fpn"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, arch):
    model = create_model(arch, weights=None, embedding_dim=6, embedding_hidden_channels=12, mean=(0.4, 0.5, 0.6))
    model.train()
    model(images(4))  # moves the BatchNorm statistics away from their initial values
    model.eval().to(memory_format=torch.channels_last)
    path = tmp_path / "sub" / "model.safetensors"
    model.save(path, metadata={"epoch": "3"})
    model.save(path, metadata={"epoch": "4"})  # replaces the file
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]
    loaded = load_model(path).eval().to(memory_format=torch.channels_last)
    assert loaded.config == model.config and loaded.config["arch"] == arch
    assert checkpoint_metadata(path) == {"epoch": "4"}
    x = images(2)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.embeddings, b.embeddings)


def test_model_file_with_a_name_that_is_not_utf8(tmp_path, unet):
    """A name the OS accepts but that is not UTF-8 (Latin-1 ``ensé``, as ``coseg ensemble --output`` may write):
    loaded and its metadata read; an error about such a file names it printably."""
    path = tmp_path / os.fsdecode(b"ens\xe9.safetensors")
    try:
        unet.save(path, metadata={"epoch": "2"})
    except (OSError, UnicodeError):
        pytest.skip("this file system cannot hold a file name that is not UTF-8")
    loaded = load_model(path)
    assert loaded.config == unet.config and checkpoint_metadata(path) == {"epoch": "2"}
    expected = unet.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    path.write_bytes(path.read_bytes()[:-4])  # header intact, tensors cut short
    with pytest.raises(ValueError, match=r"ens\\xe9.safetensors: the model file is truncated"):
        load_model(path)


def with_header(header: bytes, length: int = -1) -> bytes:
    """A file starting with the 8-byte header length (``len(header)`` unless given), then ``header``."""
    return (len(header) if length < 0 else length).to_bytes(8, "little") + header


@pytest.mark.parametrize("content, reason", [
    (b"\x02\x00", "too short"),
    (with_header(b"[]"), "not a JSON object"),
    (with_header(b"{\xff}"), "not UTF-8 JSON"),
    (with_header(b"{}", 40), "ends inside its header"),
    (with_header(b"{}", 10 ** 9), "header length 1000000000 is over"),
    (with_header(b'{"__metadata__": {"epoch": 3}}'), "string metadata"),
    (with_header(b"[" * 100_000), "nests JSON too deeply"),  # was: RecursionError
], ids=["short", "list", "bytes", "truncated", "huge", "number", "deep"])
def test_bad_safetensors_headers_are_named(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    for read in (load_model, checkpoint_metadata):
        with pytest.raises(ValueError, match=f"bad.safetensors is not a safetensors model file .*{reason}"):
            read(path)


def test_load_model_downloads_nothing(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    create_model("unet", weights="imagenet").save(path)

    def no_weights(*args, **kwargs):
        raise AssertionError("load_model must not load encoder weights")

    monkeypatch.setattr(cosegnet, "load_encoder_weights", no_weights)
    monkeypatch.setattr(cosegnet, "downloading_weights", no_weights)
    assert load_model(path).config["encoder"] == "tu-tf_efficientnet_lite0"


def test_pickle_disguised_as_a_model_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("model.safetensors", "model.pt"):
        path = tmp_path / name
        path.write_bytes(malicious_pickle(marker))
        with pytest.raises(ValueError, match=name):
            load_model(path)
    assert not marker.exists()


def test_corrupt_and_foreign_model_files(tmp_path, unet):
    path = tmp_path / "model.safetensors"
    unet.save(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.safetensors.*ends inside its header"):
        load_model(truncated)
    truncated.write_bytes(path.read_bytes()[:-1000])  # the header with the config is whole, the tensors are not
    with pytest.raises(ValueError, match="truncated.safetensors: the model file is truncated or corrupt") as err:
        load_model(truncated)
    assert "pickled" not in str(err.value)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.safetensors.*not a model file"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        load_model(tmp_path / "absent.safetensors")


def test_tensors_sharing_memory_are_saved_as_copies(tmp_path, unet):
    """An ensemble holding one model twice (was: safetensors' RuntimeError listing every shared tensor)."""
    from coseg.models import CosegEnsemble

    path = tmp_path / "twice.safetensors"
    CosegEnsemble([unet, unet]).save(path)
    loaded = load_model(path)
    expected = unet.state_dict()
    for member in loaded.members:
        assert all(torch.equal(v, expected[k]) for k, v in member.state_dict().items())


def test_reserved_metadata_key_is_refused(tmp_path, unet):
    with pytest.raises(ValueError, match="reserved"):
        unet.save(tmp_path / "m.safetensors", metadata={"coseg_model_config": "{}"})


@pytest.mark.parametrize("bad, error, words", [
    (torch.rand(1, 3, 65, 64), ValueError, "multiples of 32.*65×64.*96×64"),
    (torch.rand(1, 1, 64, 64), ValueError, r"\(B, 3, H, W\).*\(1, 1, 64, 64\)"),
    (torch.rand(3, 64, 64), ValueError, r"\(B, 3, H, W\).*\(3, 64, 64\)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "float.*uint8"),
])
def test_bad_inputs_give_clear_errors(unet, bad, error, words):
    with pytest.raises(error, match=words):
        unet(bad)


def test_deeplab_accepts_multiples_of_its_output_stride():
    model = create_model("deeplabv3plus", weights=None)
    assert model.output_stride == 16
    assert model(images(2, 48, 80)).mask_logits.shape == (2, 1, 48, 80)


def test_unknown_architecture_lists_the_valid_names():
    with pytest.raises(KeyError, match="unet.*fpn|deeplabv3plus.*unet"):
        create_model("segnet", weights=None)
    with pytest.raises(ValueError, match="unknown encoder 'tu-tf_efficientnet_lite9': timm has no model"):
        create_model("unet", encoder="tu-tf_efficientnet_lite9", weights=None)


@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_optimizer_groups_and_a_frozen_encoder(scale):
    from coseg.config import CosegTrainConfig
    from coseg.train import build_optimizer

    model = create_model("unet", weights=None, embedding_dim=4)
    optimizer = build_optimizer(model, CosegTrainConfig(lr=1e-3, encoder_lr_scale=scale))
    encoder = {id(p) for p in model.encoder.parameters()}
    optimized = [p for g in optimizer.param_groups for p in g["params"]]
    if scale == 0:  # frozen: no encoder parameter is optimized or gets gradients, BatchNorm stays in eval mode
        assert len(optimizer.param_groups) == 1 and not encoder & {id(p) for p in optimized}
        model.train()
        assert not model.encoder.training and not any(p.requires_grad for p in model.encoder.parameters())
    else:
        assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(1e-4), 1e-3]
        assert {id(p) for p in optimizer.param_groups[0]["params"]} == encoder
    assert len(optimized) == sum(1 for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="encoder_lr_scale must be >= 0"):
        build_optimizer(model, CosegTrainConfig(encoder_lr_scale=-1))


def test_group_levels_on_an_empty_feature_map_are_refused():
    assert list(create_model("unet", encoder="mit_b0", weights=None, group_levels=4).encoder.out_channels)[1] == 0
    with pytest.raises(ValueError, match=r"group_levels must be in \[0, 4\] for encoder 'mit_b0', got 5.*empty"):
        create_model("unet", encoder="mit_b0", weights=None, group_levels=5)


def test_an_encoder_smp_cannot_use_is_named():
    with pytest.raises(ValueError, match="cannot build unet with encoder 'tu-levit_128s': Unsupported"):
        create_model("unet", encoder="tu-levit_128s", weights=None)


@pytest.mark.parametrize("change, words", [({"arch": "segnet"}, "unknown segmentation architecture 'segnet'"),
                                           ({"encoder": "resnet9"}, "unknown encoder 'resnet9': "
                                                                    "smp has no encoder of that name")])
def test_model_file_naming_an_unknown_architecture_or_encoder(tmp_path, unet, change, words):
    from coseg.models.checkpoint import write_checkpoint

    path = tmp_path / "newer.safetensors"
    write_checkpoint(path, unet.state_dict(), {**unet.config, **change})
    with pytest.raises(ValueError, match=f"newer.safetensors: {words}"):
        load_model(path)
