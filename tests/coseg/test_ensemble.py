"""CosegEnsemble: the mean of its members' probabilities (against a by-hand loop), model files of ensembles,
joining files, and training an ensemble (``members``: shared budget and validation groups, one run per member)."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from apps.cli import main
from coseg.config import CosegTrainConfig
from coseg.data import find_samples
from coseg.models import (CosegEnsemble, CosegNet, EdgeFilter, GroupRefinement, GroupStatistics, checkpoint_metadata,
                          create_model, load_ensemble, load_model)
from coseg.models.checkpoint import write_checkpoint
from coseg.train import member_configs, split_train_val
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.helpers import assert_close


def member(seed: int, group_levels: int = 2) -> CosegNet:
    torch.manual_seed(seed)
    net = create_model("unet", weights=None, embedding_dim=8, group_levels=group_levels).eval()
    with torch.no_grad():  # members that disagree clearly (random decoders give ~0.5 everywhere)
        for p in net.decoder.parameters():
            p.mul_(3)
    return net


@pytest.fixture(scope="module")
def members() -> list[CosegNet]:
    return [member(0), member(1), member(2)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_predict_group_is_the_mean_of_the_members_then_the_edge_filter(members):
    torch.manual_seed(3)
    images = torch.rand(5, 3, 64, 64)
    ensemble = CosegEnsemble(members)
    edges, refinement, statistics = EdgeFilter(), GroupRefinement(1, 2.0), GroupStatistics(4)
    for kwargs in ({}, {"flip": True}, {"refinement": refinement}, {"statistics": statistics}):
        expected = torch.zeros(5, 1, 64, 64)
        for m in members:
            expected += m.predict_group(images, chunk_size=2, **kwargs) / len(members)
        assert_close(ensemble.predict_group(images, chunk_size=2, **kwargs), expected, atol=1e-5, rtol=0)
        assert_close(ensemble.predict_group(images, chunk_size=2, edges=edges, **kwargs), edges(expected, images),
                     atol=1e-5, rtol=0)
    spread = torch.stack([m.predict_group(images) for m in members]).std(0).mean()
    assert spread > 0.01  # the members differ, so the mean is not any one of them


def test_predict_is_the_mean_of_the_members(members):
    images = torch.rand(3, 3, 64, 64)
    groups = torch.tensor([0, 0, 1])
    expected = sum(m.predict(images, groups, flip=True) for m in members) / 3
    assert_close(CosegEnsemble(members).predict(images, groups, flip=True), expected, atol=1e-5, rtol=0)


def test_one_member_predicts_like_the_member(members):
    images = torch.rand(4, 3, 64, 64)
    assert_close(CosegEnsemble(members[:1]).predict_group(images, edges=EdgeFilter()),
                 members[0].predict_group(images, edges=EdgeFilter()), atol=0, rtol=0)


def test_order_of_the_members_does_not_matter(members):
    images = torch.rand(4, 3, 64, 64)
    assert_close(CosegEnsemble(members).predict_group(images), CosegEnsemble(members[::-1]).predict_group(images),
                 atol=1e-5, rtol=0)


def test_no_member_and_output_stride():
    with pytest.raises(ValueError, match="at least one model"):
        CosegEnsemble([])
    deeplab = create_model("deeplabv3plus", weights=None, embedding_dim=8)
    unet = create_model("unet", weights=None, embedding_dim=8)
    assert CosegEnsemble([deeplab, unet]).output_stride == max(deeplab.output_stride, unet.output_stride)


def test_model_file_round_trip_and_joining_files(tmp_path, members):
    images = torch.rand(4, 3, 64, 64)
    path = tmp_path / "ensemble.safetensors"
    CosegEnsemble(members[:2]).save(path, {"image_size": "64"})
    loaded = load_model(path)
    assert isinstance(loaded, CosegEnsemble) and len(loaded.members) == 2
    assert_close(loaded.predict_group(images), CosegEnsemble(members[:2]).predict_group(images), atol=0, rtol=0)
    assert checkpoint_metadata(path) == {"image_size": "64"}

    single = tmp_path / "single.safetensors"
    members[2].save(single, {"image_size": "64"})
    assert isinstance(load_model(single), CosegNet)
    joined, size = load_ensemble([path, single])  # an ensemble file contributes its members
    assert size == 64 and len(joined.members) == 3
    assert_close(joined.predict_group(images), CosegEnsemble(members).predict_group(images), atol=1e-5, rtol=0)


def test_joining_refuses_different_image_sizes_and_nothing(tmp_path, members):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    members[0].save(a, {"image_size": "64"})
    members[1].save(b, {"image_size": "128"})
    with pytest.raises(ValueError, match=r"different image sizes: .*a\.safetensors: 64, .*b\.safetensors: 128"):
        load_ensemble([a, b])
    with pytest.raises(ValueError, match="no model file"):
        load_ensemble([])


def test_ensemble_file_with_other_keys_is_refused(tmp_path, members):
    bad = tmp_path / "bad.safetensors"
    ensemble = CosegEnsemble(members[:1])
    write_checkpoint(bad, ensemble.state_dict(), {**ensemble.config, "arch": "unet"})
    with pytest.raises(ValueError, match=r"bad\.safetensors.*only 'members'"):
        load_model(bad)


def test_ensemble_command(tmp_path, members):
    a, b, c = (tmp_path / f"{n}.safetensors" for n in "abc")
    members[0].save(a, {"image_size": "64"})
    members[1].save(b, {"image_size": "64"})
    members[2].save(c, {"image_size": "96"})
    r = invoke("ensemble", a, b, "--output", tmp_path / "e.safetensors")
    assert r.exit_code == 0, r.output
    assert "ensemble of 2 model(s)" in r.output
    assert checkpoint_metadata(tmp_path / "e.safetensors") == {"image_size": "64"}
    assert len(load_model(tmp_path / "e.safetensors").members) == 2
    r = invoke("ensemble", a, c, "--output", tmp_path / "f.safetensors")
    assert r.exit_code == 1 and "different image sizes" in r.output
    assert not (tmp_path / "f.safetensors").exists()


def test_ensemble_command_names_the_model_files_for_a_runs_training_state(tmp_path, members):
    # was: "last.pt is not a safetensors model file (header length …) … pickled .pt/.pth files are refused"
    a, state = tmp_path / "a.safetensors", tmp_path / "run" / "last.pt"
    members[0].save(a, {"image_size": "64"})
    state.parent.mkdir()
    state.write_bytes(b"PK\x03\x04" + bytes(64))
    r = invoke("ensemble", a, state, "--output", tmp_path / "e.safetensors")
    assert r.exit_code == 2, r.output  # a usage error, as for --checkpoint (was 1)
    assert (f"Invalid value for 'MODELS...': {state} is a run's training state (what --resume continues from), not a "
            "model file: give best.safetensors or last.safetensors from the same folder") in " ".join(r.output.split())
    assert not (tmp_path / "e.safetensors").exists()


def test_ensemble_command_refuses_a_model_twice_and_replacing_a_member(tmp_path, members, monkeypatch):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    members[0].save(a, {"image_size": "64"})
    members[1].save(b, {"image_size": "64"})
    before = a.read_bytes()
    monkeypatch.chdir(tmp_path)
    r = invoke("ensemble", a, b, "a.safetensors", "--output", tmp_path / "e.safetensors")
    assert r.exit_code == 1 and "a.safetensors is given twice (as " in r.output
    with pytest.raises(ValueError, match=r"a\.safetensors is given twice: its probabilities would count twice"):
        load_ensemble([a, b, a])
    r = invoke("ensemble", a, b, "--output", "a.safetensors", "--overwrite")
    assert r.exit_code == 1 and "is one of the models joined" in r.output
    assert a.read_bytes() == before and not (tmp_path / "e.safetensors").exists()


def test_member_configs_share_the_budget_and_the_groups(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=6, images=2)
    scan = find_samples(data, "auto")
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), members=3, minutes=30, epochs=100, seed=5,
                           val_fraction=0.34)
    train_groups, val_groups = split_train_val(cfg, scan)
    configs = member_configs(cfg, scan)
    assert [c.seed for c in configs] == [5, 6, 7]
    assert [c.minutes for c in configs] == [10, 10, 10] and all(c.members == 1 for c in configs)
    assert [c.epochs for c in configs] == [100, 100, 100]  # with a time budget each may run up to all epochs
    assert [c.output for c in configs] == [str(tmp_path / "run" / f"member{i}") for i in range(3)]
    for c in configs:  # another seed would carve other validation groups: each member gets the parent's
        assert split_train_val(c, scan) == (train_groups, val_groups)
    assert val_groups and split_train_val(CosegTrainConfig(data=str(data), val_fraction=0.34, seed=6), scan) != (
        train_groups, val_groups)
    no_validation = member_configs(CosegTrainConfig(data=str(data), members=2, epochs=1, val_fraction=0.0), scan)
    assert all(c.val_groups == [] and c.val_fraction == 0 and c.minutes is None and c.epochs == 1
               for c in no_validation)
    for epochs, each in ((5, 3), (7, 4), (4, 2), (3, 2)):  # half up (was: half to even, 5 / 2 gave 2 and 7 / 2 gave 4)
        split = member_configs(CosegTrainConfig(data=str(data), members=2, epochs=epochs, val_fraction=0.0), scan)
        assert [c.epochs for c in split] == [each, each], epochs
    assert CosegTrainConfig().members == 3  # the default (docs/icoseg_experiments.md)
    with pytest.raises(ValueError, match="members must be >= 1"):
        from coseg.train import train
        train(CosegTrainConfig(data=str(data), members=0))


@pytest.mark.slow
def test_a_resumed_ensembles_speed_is_this_sessions(tmp_path):
    """Member 1 killed before its first checkpoint: the resume trains it alone, and the ensemble's images/s is its
    speed (was: weighted by every member's whole training time, member 0's earlier session counting at 0 images/s,
    so about half)."""
    from coseg.train import train

    data = synthetic_set(tmp_path / "data", groups=3, images=4)
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), members=2, epochs=2, val_fraction=0.34,
                           weights="none", image_size=64, groups_per_batch=2, images_per_group=2, triplet_pixels=8,
                           quiet=True)
    train(cfg)
    for name in ("last.pt", "log.csv", "best.safetensors", "last.safetensors"):
        (tmp_path / "run" / "member1" / name).unlink()
    result = train(cfg, resume=True)
    done, resumed = result.members
    assert done.images_per_s == 0 and done.seconds > 0 and resumed.images_per_s > 0
    assert result.fit.images_per_s == pytest.approx(resumed.images_per_s, rel=0.05)


def test_train_an_ensemble_then_evaluate_predict_and_report(tmp_path):
    from coseg.data import CosegDataset, ImageCache
    from coseg.selection import samples_of
    from coseg.train import validation_scores

    data = synthetic_set(tmp_path / "data", groups=3, images=4)
    run = tmp_path / "run"
    tiny = ["--data", data, "--output", run, "--members", 2, "--val-fraction", 0.34, "--weights", "none",
            "--image-size", 64, "--groups-per-batch", 2, "--images-per-group", 2, "--triplet-pixels", 8, "--quiet"]
    r = invoke("train", *tiny, "--epochs", 2)  # one epoch each
    assert r.exit_code == 0, r.output
    assert "member 0: trained 1 epoch(s)" in r.output and "member 1: best validation J" in r.output
    assert "ensemble of 2 models" in r.output and "member<i>/" in r.output
    parent = yaml.safe_load((run / "config.yaml").read_text())
    assert parent["members"] == 2 and parent["seed"] == 0
    configs = [yaml.safe_load((run / f"member{i}" / "config.yaml").read_text()) for i in range(2)]
    assert [c["seed"] for c in configs] == [0, 1] and configs[0]["val_groups"] == configs[1]["val_groups"] != []

    best = load_model(run / "best.safetensors")
    assert isinstance(best, CosegEnsemble) and len(best.members) == 2
    for i, m in enumerate(best.members):
        expected = load_model(run / f"member{i}" / "best.safetensors").state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in m.state_dict().items())
    meta = checkpoint_metadata(run / "best.safetensors")
    assert meta["image_size"] == "64" and meta["members"] == "2"
    scan = find_samples(data, "auto")
    val = CosegDataset(samples_of(scan, configs[0]["val_groups"]), 64, ImageCache(64, progress=False))
    scores = validation_scores(best.to(memory_format=torch.channels_last).eval(), val, torch.device("cpu"))
    assert float(meta["val_J"]) == pytest.approx(scores["J"], abs=1e-3)
    assert f"validation J {scores['J']:.2f}" in r.output
    assert isinstance(load_model(run / "last.safetensors"), CosegEnsemble)
    assert [len(list(csv.DictReader(open(run / f"member{i}" / "log.csv")))) for i in range(2)] == [1, 1]

    r = invoke("train", *tiny, "--epochs", 4, "--resume")  # each member goes on from its last epoch to 2
    assert r.exit_code == 0, r.output
    assert [[row["epoch"] for row in csv.DictReader(open(run / f"member{i}" / "log.csv"))] for i in range(2)] == [
        ["1", "2"], ["1", "2"]]

    r = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output", tmp_path / "ev",
               "--quiet", "--report")
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "ev" / "summary.json").read_text())["per_group"]) == 3
    r = invoke("predict", "--checkpoint", run / "best.safetensors", "--input", data / "images", "--output",
               tmp_path / "pred", "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred").rglob("*.png"))) == 12
    r = invoke("report", run, "--quiet")
    assert r.exit_code == 0, r.output
    html = (run / "report.html").read_text()
    assert "member0" in html and "member1" in html
