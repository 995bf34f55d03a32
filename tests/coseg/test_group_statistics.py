import math

import pytest
import torch
from torch import nn

from coseg.models import GroupStatistics, create_model
from coseg.models import cosegnet
from coseg.models.colour_cut import image_digest
from coseg.models.cosegnet import statistics_images
from tests.helpers import assert_close


def small_net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 2, 3, padding=1), nn.BatchNorm2d(2))
    with torch.no_grad():  # trained-looking statistics and affine parameters
        for bn in (net[1], net[4]):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.num_batches_tracked.fill_(123)
    return net.eval()


@torch.no_grad()
def naive_adapted_output(net, x, w):
    """Layer by layer with loops over channels: each BatchNorm's group statistics are the mean and unbiased variance
    over (N, H, W) of its input, computed with the earlier layers normalised by their group statistics; then the
    output with every layer normalised by w · stored + (1 − w) · group."""
    def normalise(h, mean, var, bn):
        out = torch.empty_like(h)
        for c in range(h.shape[1]):
            out[:, c] = (h[:, c] - mean[c]) / math.sqrt(var[c] + bn.eps) * bn.weight[c] + bn.bias[c]
        return out

    group_stats = []
    h = x
    for layer in net:
        if isinstance(layer, nn.BatchNorm2d):
            values = [h[:, c].flatten() for c in range(h.shape[1])]
            mean = torch.stack([v.mean() for v in values])
            biased = torch.stack([((v - v.mean()) ** 2).mean() for v in values])
            unbiased = torch.stack([((v - v.mean()) ** 2).sum() / (v.numel() - 1) for v in values])
            group_stats.append((mean, unbiased))
            h = normalise(h, mean, biased, layer)  # train mode normalises by the biased variance
        else:
            h = layer(h)
    h = x
    stats = iter(group_stats)
    for layer in net:
        if isinstance(layer, nn.BatchNorm2d):
            mean, var = next(stats)
            h = normalise(h, w * layer.running_mean + (1 - w) * mean, w * layer.running_var + (1 - w) * var, layer)
        else:
            h = layer(h)
    return h


def test_prior_weight_and_bad_settings():
    assert GroupStatistics(8).prior_weight(8) == pytest.approx(0.5)
    assert GroupStatistics(8).prior_weight(24) == pytest.approx(0.25)
    assert GroupStatistics(0).prior_weight(3) == 0.0
    with pytest.raises(ValueError, match="at least one image"):
        GroupStatistics(8).prior_weight(0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="strength"):
            GroupStatistics(bad)


@pytest.mark.parametrize("strength", [0.0, 3.0, 40.0])
def test_adapted_statistics_match_a_layer_by_layer_reference(strength):
    net = small_net()
    x = torch.randn(3, 3, 6, 5) * 2 + 1
    stats = GroupStatistics(strength)
    with torch.no_grad(), stats.adapted(net, lambda: net(x), n=3):
        adapted = net(x)
    assert_close(adapted, naive_adapted_output(net, x, stats.prior_weight(3)), atol=1e-5, rtol=1e-4)


def test_statistics_momentum_and_modes_are_restored_even_after_an_error():
    net = small_net()
    net[4].train()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in net.state_dict().items()}
    momenta = [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="inside"):
        with GroupStatistics(1.0).adapted(net, lambda: net(x), n=2):
            assert not net[1].training and not net[4].training  # prediction inside uses the blended statistics
            assert not torch.equal(net[1].running_mean, before["1.running_mean"])
            raise RuntimeError("inside")
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    assert not net[1].training and net[4].training


def test_a_very_strong_prior_leaves_the_prediction_unchanged():
    net = small_net()
    x = torch.randn(4, 3, 5, 5)
    with torch.no_grad():
        plain = net(x)
        with GroupStatistics(1e9).adapted(net, lambda: net(x), n=4):
            assert_close(net(x), plain, atol=1e-5, rtol=1e-5)


def batchnorm_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@torch.no_grad()
def naive_pooled_statistics(run, model, passes, limit=None):
    """Each BatchNorm layer's inputs over ``run(x)`` for every x in ``passes`` (the layers in train mode: each pass
    normalised by its own statistics), joined, the first ``limit`` images of each layer (all by default): the mean
    and unbiased variance over (N, H, W) in float64."""
    layers = batchnorm_layers(model)
    inputs = {id(m): [] for m in layers}
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs[id(m)].append(args[0].double())) for m in layers]
    was = [m.training for m in layers]
    for m in layers:
        m.train()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        for x in passes:
            run(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.load_state_dict(saved)
        for m, training in zip(layers, was):
            m.train(training)
    joined = [torch.cat(inputs[id(m)])[:limit].transpose(0, 1).flatten(1) for m in layers]
    return [(v.mean(dim=1), v.var(dim=1)) for v in joined]


def measured_statistics(model, measure, n, measured=None):
    with torch.no_grad(), GroupStatistics(0).adapted(model, measure, n, measured):
        return [(m.running_mean.clone(), m.running_var.clone()) for m in batchnorm_layers(model)]


def test_passes_of_unequal_sizes_are_pooled_as_one_group():
    net = small_net()
    a, b = torch.randn(1, 3, 4, 4), torch.randn(3, 3, 4, 4) * 2 + 3
    measured = measured_statistics(net, lambda: (net(a), net(b)), 4)
    for (mean, var), (naive_mean, naive_var) in zip(measured, naive_pooled_statistics(net, net, [a, b])):
        assert_close(mean, naive_mean, atol=1e-5, rtol=1e-5)
        assert_close(var, naive_var, atol=1e-5, rtol=1e-5)
    # the first layer's inputs do not depend on how the group is split: its statistics are the whole group's
    whole = measured_statistics(net, lambda: net(torch.cat([a, b])), 4)
    assert_close(measured[0][0], whole[0][0], atol=1e-6, rtol=1e-6)
    assert_close(measured[0][1], whole[0][1], atol=1e-6, rtol=1e-6)


def test_each_layer_counts_the_first_measured_images_once():
    net = small_net()
    a, b = torch.randn(2, 3, 4, 4), torch.randn(1, 3, 4, 4) + 3
    once = measured_statistics(net, lambda: (net(a), net(b)), n=10, measured=3)
    again = measured_statistics(net, lambda: (net(a), net(b), net(a + 5)), n=10, measured=3)
    for (mean, var), (mean_again, var_again) in zip(once, again):
        assert torch.equal(mean, mean_again) and torch.equal(var, var_again)


@pytest.fixture(scope="module")
def group_model():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=2).eval()
    for m in model.group_consensus:
        torch.nn.init.normal_(m.fuse[-1].weight, std=0.1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


def test_group_prediction_with_adapted_statistics(group_model):
    x = torch.rand(5, 3, 64, 64)
    stats = GroupStatistics(4.0)
    adapted = group_model.predict_group(x, chunk_size=8, statistics=stats)
    assert not torch.allclose(adapted, group_model.predict_group(x, chunk_size=8), atol=1e-3)
    # the same as blending by hand: the whole group through the model with its BatchNorm layers in train mode
    reference = GroupStatistics(4.0)
    with torch.no_grad(), reference.adapted(group_model, lambda: group_model(x, torch.zeros(5, dtype=torch.long)), 5):
        expected = torch.sigmoid(group_model(x, torch.zeros(5, dtype=torch.long)).mask_logits)
    assert_close(adapted, expected, atol=1e-5, rtol=1e-4)
    assert not group_model.training
    # an image's mask does not depend on the order of the others
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert_close(group_model.predict_group(x[perm], chunk_size=8, statistics=stats), adapted[perm],
                 atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("max_references", [128, 4], ids=["whole-group", "references"])
def test_adapted_statistics_depend_neither_on_the_chunks_nor_on_the_order(group_model, monkeypatch, max_references):
    monkeypatch.setattr(group_model, "max_references", max_references)
    x = torch.rand(7, 3, 64, 64)
    stats = GroupStatistics(4.0)
    whole = group_model.predict_group(x, chunk_size=8, statistics=stats)
    perm = torch.tensor([3, 6, 0, 1, 5, 2, 4])
    for chunk_size in (1, 3):
        assert_close(group_model.predict_group(x, chunk_size=chunk_size, statistics=stats), whole,
                     atol=1e-5, rtol=1e-4)
        assert_close(group_model.predict_group(x[perm], chunk_size=chunk_size, statistics=stats), whole[perm],
                     atol=1e-5, rtol=1e-4)
    chosen = statistics_images(x, max_references)  # beyond max_references, measured on as many, chosen by content
    assert len(chosen) == min(7, max_references)
    assert torch.equal(perm[statistics_images(x[perm], max_references)].sort().values, chosen)


def test_a_group_too_small_to_measure_is_a_clear_error(group_model):
    assert group_model.predict_group(torch.rand(2, 3, 32, 32), chunk_size=1, statistics=GroupStatistics()).shape == (
        2, 1, 32, 32)  # two images: two values per channel at the deepest level, whatever the chunks
    with pytest.raises(ValueError, match="a group of one 32×32 image has a 1×1 deepest feature map"):
        group_model.predict_group(torch.rand(1, 3, 32, 32), statistics=GroupStatistics())
    assert not any(m.training for m in group_model.modules() if isinstance(m, nn.BatchNorm2d))


def test_predict_lists_a_group_too_small_to_measure_and_goes_on(group_model, tmp_path):
    """``predict --group-statistics`` at 32 px: the one-image group's image is listed as skipped with the reason
    (was: the run stopped there without naming it, after earlier groups were written); the next group is written."""
    import numpy as np

    from coseg.predict import predict_folder
    from tests.coseg.files import write_rgb

    rng = np.random.default_rng(0)
    for name in ("a/alone.png", "b/one.png", "b/two.png"):
        write_rgb(tmp_path / "in" / name, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    report = predict_folder(group_model, 32, tmp_path / "in", tmp_path / "out", torch.device("cpu"), progress=False,
                            statistics=GroupStatistics())
    assert report.written == 2 and sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["one.png", "two.png"]
    [(file, reason)] = report.skipped
    assert file.endswith("alone.png") and reason.startswith(file)
    assert "a group of one 32×32 image has a 1×1 deepest feature map" in reason


def test_one_pass_keeps_the_layers_own_batch_statistics(group_model):
    """At the default size a group is measured in one pass, with BatchNorm's own statistics of it, as before
    chunking: the very same values."""
    x = torch.rand(5, 3, 64, 64)
    layers = batchnorm_layers(group_model)
    saved = {k: v.clone() for k, v in group_model.state_dict().items()}
    momenta = [m.momentum for m in layers]
    with torch.no_grad():
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        group_model(x, torch.zeros(5, dtype=torch.long))
        expected = [(m.running_mean.clone(), m.running_var.clone()) for m in layers]
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
        group_model.load_state_dict(saved)
    measured = measured_statistics(group_model, lambda: group_model._statistics_pass(x), 5)
    for (mean, var), (expected_mean, expected_var) in zip(measured, expected):
        assert torch.equal(mean, expected_mean) and torch.equal(var, expected_var)


def by_content(x):
    return x[sorted(range(len(x)), key=lambda i: image_digest(x[i].numpy()))]


def test_chunked_measuring_pools_each_layer_over_the_chunks(monkeypatch):
    torch.manual_seed(1)
    model = create_model("unet", weights=None, embedding_dim=4).eval()
    x = by_content(torch.rand(5, 3, 64, 64))
    monkeypatch.setattr(cosegnet, "STATISTICS_PIXELS", 2 * 64 * 64)  # chunks of 2, 2 and 1 images
    measured = measured_statistics(model, lambda: model._statistics_pass(x), 5)
    naive = naive_pooled_statistics(model, model, x.split(2))
    for (mean, var), (naive_mean, naive_var) in zip(measured, naive):
        assert_close(mean, naive_mean, atol=1e-5, rtol=1e-4)
        assert_close(var, naive_var, atol=1e-5, rtol=1e-4)
    # the same chunks whatever the order of the images: they follow the images' content
    shuffled = measured_statistics(model, lambda: model._statistics_pass(x[torch.tensor([4, 2, 0, 3, 1])]), 5)
    for (mean, var), (mean_shuffled, var_shuffled) in zip(measured, shuffled):
        assert_close(mean_shuffled, mean, atol=1e-6, rtol=1e-5)
        assert_close(var_shuffled, var, atol=1e-6, rtol=1e-5)


def test_chunked_measuring_with_consensus_against_one_pass(group_model, monkeypatch):
    """Measured in chunks of 3, 3 and 1 images, each seeing the group's consensus: every layer counts each image
    once, the first layer's statistics are the whole group's, and the masks stay close to one pass's (deeper layers'
    inputs come from layers that normalised each chunk by its own statistics: :mod:`group_statistics`; here the
    probabilities differ by 0.008 on average, 0.06 at most)."""
    x = by_content(torch.rand(7, 3, 64, 64))
    stats = GroupStatistics(4.0)
    whole = measured_statistics(group_model, lambda: group_model._statistics_pass(x), 7)
    one_pass = group_model.predict_group(x, chunk_size=8, statistics=stats)
    monkeypatch.setattr(cosegnet, "STATISTICS_PIXELS", 3 * 64 * 64)
    chunked = measured_statistics(group_model, lambda: group_model._statistics_pass(x), 7)
    naive = naive_pooled_statistics(group_model._statistics_pass, group_model, [x], limit=7)
    for (mean, var), (naive_mean, naive_var) in zip(chunked, naive):
        assert_close(mean, naive_mean, atol=1e-5, rtol=1e-4)
        assert_close(var, naive_var, atol=1e-5, rtol=1e-4)
    assert_close(chunked[0][0], whole[0][0], atol=1e-6, rtol=1e-5)
    assert_close(chunked[0][1], whole[0][1], atol=1e-6, rtol=1e-5)
    masks = group_model.predict_group(x, chunk_size=8, statistics=stats)
    difference = (masks - one_pass).abs()
    assert 0 < difference.mean() < 0.02 and difference.max() < 0.15, (difference.mean(), difference.max())
