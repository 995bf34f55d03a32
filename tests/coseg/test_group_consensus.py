import pytest
import torch
import torch.nn.functional as F

from coseg.models import ARCHITECTURES, create_model
from coseg.models.cosegnet import DECODED_DEEPEST_LEVELS
from coseg.models.group_consensus import GroupConsensus, best_matches, consensus_maps, group_prototypes
from tests.helpers import assert_close


def unit(*shape):
    return F.normalize(torch.randn(*shape), dim=1)


def naive_common(keys, i):
    """Mean over the other images j of max_q <k_i[:, p], k_j[:, q]>, by loops."""
    n, _, p = keys.shape
    out = torch.zeros(p)
    for pix in range(p):
        vals = [max(float(keys[i, :, pix] @ keys[j, :, q]) for q in range(keys.shape[2])) for j in range(n) if j != i]
        out[pix] = sum(vals) / len(vals) if vals else 0.0
    return out


def test_common_map_matches_loops_and_chunking():
    keys = unit(4, 5, 6)
    eye = torch.eye(4, dtype=torch.bool)
    maps = consensus_maps(keys, keys, group_prototypes(keys), eye)
    for i in range(4):
        assert_close(maps[i, 0], naive_common(keys, i))
    assert_close(best_matches(keys, keys, budget=7), best_matches(keys, keys))


def test_group_of_one_gets_zero_maps():
    keys = unit(1, 5, 6)
    maps = consensus_maps(keys, keys, group_prototypes(keys), torch.ones(1, 1, dtype=torch.bool))
    assert torch.count_nonzero(maps) == 0


def test_output_of_an_image_does_not_depend_on_the_order_of_the_others():
    torch.manual_seed(0)
    module = GroupConsensus(8, key_channels=4).eval()
    torch.nn.init.normal_(module.fuse[-1].weight)
    f = torch.randn(5, 8, 3, 3)
    groups = torch.tensor([0, 0, 1, 0, 1])
    out = module(f, groups)
    perm = torch.tensor([3, 1, 4, 0, 2])
    out_perm = module(f[perm], groups[perm])
    assert_close(out_perm, out[perm])
    solo_groups = torch.tensor([0, 0, 9, 0, 1])
    assert_close(module(f[2:3], torch.tensor([7])), module(f, solo_groups)[2:3])  # other groups do not matter


def test_fresh_module_is_the_identity():
    module = GroupConsensus(8).eval()
    f = torch.randn(3, 8, 4, 4)
    assert torch.equal(module(f, torch.tensor([0, 0, 1])), f)


def test_model_group_forward_and_chunked_group_prediction():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=2).eval()
    for m in model.group_consensus:
        torch.nn.init.normal_(m.fuse[-1].weight, std=0.1)
    x = torch.rand(5, 3, 64, 64)
    whole = model.predict_group(x, chunk_size=16)
    chunked = model.predict_group(x, chunk_size=2)
    assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
    assert_close(whole, model.predict(x, torch.zeros(5, dtype=torch.long)))
    single = model.predict(x)  # no group ids: every image alone
    assert not torch.allclose(single, whole)
    out = model(x, torch.tensor([0, 0, 1, 1, 1]))
    assert out.mask_logits.shape == (5, 1, 64, 64)


def test_chunked_group_prediction_encodes_once_within_the_feature_budget(monkeypatch):
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=2).eval()
    for m in model.group_consensus:
        torch.nn.init.normal_(m.fuse[-1].weight, std=0.1)
    x = torch.rand(5, 3, 64, 64)
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda images: calls.append(len(images)) or encode(images))
    with torch.inference_mode():
        kept = torch.cat([o.mask_logits for o in model._group_outputs(x, chunk_size=2)])
        assert calls == [2, 2, 1]  # one encoder pass per image
        calls.clear()
        again = torch.cat([o.mask_logits for o in model._group_outputs(x, chunk_size=2, feature_budget_bytes=0)])
        assert calls == [2, 2, 1, 2, 2, 1]  # nothing fits: encoded twice
    assert_close(kept, again)


def test_group_levels_are_saved_and_checked(tmp_path):
    from coseg.models import load_model

    model = create_model("unet", weights=None, group_levels=1)
    model.save(tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").group_levels == 1
    with pytest.raises(ValueError, match="group_levels"):
        create_model("unet", weights=None, group_levels=9)


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
def test_every_consensus_module_trains_up_to_the_levels_the_decoder_reads(arch):
    levels = DECODED_DEEPEST_LEVELS.get(arch, 5)
    model = create_model(arch, weights=None, embedding_dim=4, group_levels=levels).train()
    for m in model.group_consensus:
        torch.nn.init.normal_(m.fuse[-1].weight, std=0.1)
    out = model(torch.rand(4, 3, 64, 64), torch.tensor([0, 0, 1, 1]))
    (out.mask_logits.mean() + out.embeddings.mean()).backward()
    unused = [name for name, p in model.group_consensus.named_parameters() if p.grad is None]
    assert not unused  # DistributedDataParallel (find_unused_parameters=False) fails on unused parameters
    if levels < 5:
        with pytest.raises(ValueError, match=f"group_levels must be in \\[0, {levels}\\] for {arch}.*does not read"):
            create_model(arch, weights=None, group_levels=levels + 1)


def test_group_ids_are_checked_before_the_semantic_prior_reads_them():
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1, semantic_prior=True)
    for groups in (torch.zeros(2, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"groups must have shape \(3\)"):
            model(torch.rand(3, 3, 64, 64), groups)


@pytest.mark.parametrize("group_levels", [0, 1])
def test_chunk_size_must_be_positive(group_levels):
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=group_levels)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        model.predict_group(torch.rand(2, 3, 64, 64), chunk_size=0)


def naive_refine(logits, emb, iterations, weight):
    refined = logits.clone()
    n, d, h, w = emb.shape
    H, W = logits.shape[-2:]
    for _ in range(iterations):
        p = torch.nn.functional.adaptive_avg_pool2d(torch.sigmoid(refined), (h, w))
        fg, bg = torch.zeros(d), torch.zeros(d)
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    fg += p[i, 0, y, x] * emb[i, :, y, x]
                    bg += (1 - p[i, 0, y, x]) * emb[i, :, y, x]
        fg, bg = fg / fg.norm(), bg / bg.norm()
        score = torch.zeros(n, 1, h, w)
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    score[i, 0, y, x] = emb[i, :, y, x] @ (fg - bg)
        score = torch.nn.functional.interpolate(score, size=(H, W), mode="bilinear", align_corners=False)
        refined = logits + weight * score
    return refined


def test_group_refinement_matches_loops():
    from coseg.models import GroupRefinement

    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    emb = F.normalize(torch.randn(3, 4, 2, 2), dim=1)
    for iterations in (0, 1, 3):
        out = GroupRefinement(iterations=iterations, weight=1.5)(logits, emb)
        assert_close(out, naive_refine(logits, emb, iterations, 1.5))
    with pytest.raises(ValueError, match="same images"):
        GroupRefinement()(logits, emb[:2])


def test_refined_group_prediction_runs_chunked():
    from coseg.models import GroupRefinement

    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1).eval()
    x = torch.rand(5, 3, 64, 64)
    a = model.predict_group(x, chunk_size=2, refinement=GroupRefinement(2, 1.0))
    b = model.predict_group(x, chunk_size=8, refinement=GroupRefinement(2, 1.0))
    assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a, model.predict_group(x, chunk_size=8))


def test_flip_averages_the_logits_of_the_group_and_of_the_mirrored_group():
    from coseg.models import GroupRefinement

    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1).eval()
    x = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        direct = model(x, torch.zeros(5, dtype=torch.long))
        mirrored = model(x.flip(-1), torch.zeros(5, dtype=torch.long))
    expected = torch.sigmoid((direct.mask_logits + mirrored.mask_logits.flip(-1)) / 2)
    assert_close(model.predict_group(x, chunk_size=2, flip=True), expected, atol=1e-5, rtol=1e-4)
    assert_close(model.predict(x, torch.zeros(5, dtype=torch.long), flip=True), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(model.predict_group(x, chunk_size=2), expected, atol=1e-3)
    # refinement then sees the averaged logits and the averaged (re-normalised) embeddings
    refinement = GroupRefinement(2, 1.0)
    embeddings = F.normalize(direct.embeddings + mirrored.embeddings.flip(-1), dim=1)
    averaged = (direct.mask_logits + mirrored.mask_logits.flip(-1)) / 2
    assert_close(model.predict_group(x, chunk_size=8, refinement=refinement, flip=True),
                 torch.sigmoid(refinement(averaged, embeddings)), atol=1e-5, rtol=1e-4)
    # a mirror-symmetric group gives a mirror-symmetric prediction
    symmetric = torch.cat([x[..., :32], x[..., :32].flip(-1)], dim=-1)
    probs = model.predict_group(symmetric, chunk_size=8, flip=True)
    assert_close(probs, probs.flip(-1), atol=1e-5, rtol=1e-4)


def test_a_model_file_whose_config_is_refused_is_named(tmp_path):
    from coseg.models import load_model
    from coseg.models.checkpoint import write_checkpoint

    model = create_model("deeplabv3plus", encoder="resnet18", weights=None, group_levels=1)
    path = tmp_path / "old.safetensors"
    write_checkpoint(path, model.state_dict(), {**model.config, "group_levels": 2})  # as an older version allowed
    with pytest.raises(ValueError, match=r"old.safetensors: group_levels must be in \[0, 1\] for deeplabv3plus"):
        load_model(path)
