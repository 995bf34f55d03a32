"""A group too large to hold in memory: its context from one pass over its chunks, then each chunk predicted in
that context (``CosegNet.group_context`` / ``predict_chunk``), and ``predict_dataset`` reading such a group in chunks
with the same results as reading it whole."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from coseg.models import CosegEnsemble, EdgeFilter, GroupColourCut, create_model
from tests.helpers import assert_close

CPU = torch.device("cpu")


def group_model(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=2, **kwargs)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        torch.nn.init.normal_(module.fuse[-1].weight, std=0.1)
    return model.eval()


def chunked(model, x: torch.Tensor, size: int, flip: bool = False, edges=None) -> torch.Tensor:
    context = model.group_context(x.split(size), flip=flip)
    return torch.cat([model.predict_chunk(chunk, context, range(i * size, i * size + len(chunk)), flip=flip,
                                          edges=edges) for i, chunk in enumerate(x.split(size))])


@pytest.mark.parametrize("flip", [False, True], ids=["plain", "flip"])
def test_chunks_in_the_group_context_give_the_group_prediction(flip):
    model = group_model()
    x = torch.rand(7, 3, 64, 64)
    whole = model.predict_group(x, chunk_size=16, flip=flip, edges=EdgeFilter())
    assert_close(chunked(model, x, 3, flip, EdgeFilter()), whole, atol=1e-5, rtol=1e-4)
    context = model.group_context(x.split(2), flip=flip)  # chunks of any size, rows in any order
    assert_close(model.predict_chunk(x[[6, 0, 3]], context, [6, 0, 3], flip=flip, edges=EdgeFilter()),
                 whole[[6, 0, 3]], atol=1e-5, rtol=1e-4)
    alone = model.predict_group(x[:3], chunk_size=16, flip=flip)
    assert not torch.allclose(alone, whole[:3], atol=1e-3)  # the rest of the group matters


def test_semantic_prior_and_ensembles_stream_too():
    models = [group_model(seed, semantic_prior=True) for seed in (0, 1)]
    for model in models:
        model.load_state_dict(models[0].state_dict() if model is models[0] else
                              {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
    ensemble = CosegEnsemble(models).eval()
    x = torch.rand(5, 3, 64, 64)
    assert_close(chunked(models[0], x, 2), models[0].predict_group(x, chunk_size=16), atol=1e-5, rtol=1e-4)
    whole = ensemble.predict_group(x, chunk_size=16, flip=True, edges=EdgeFilter())
    assert_close(chunked(ensemble, x, 2, flip=True, edges=EdgeFilter()), whole, atol=1e-5, rtol=1e-4)


def test_single_image_model_needs_no_context():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4).eval()
    x = torch.rand(5, 3, 64, 64)
    assert model.group_context(x.split(2)) is None
    assert_close(chunked(model, x, 2, flip=True), model.predict(x, flip=True), atol=1e-5, rtol=1e-4)


def test_predict_chunk_refuses_a_missing_or_mismatched_context():
    model = group_model()
    x = torch.rand(4, 3, 64, 64)
    context = model.group_context(x.split(2))
    with pytest.raises(ValueError, match="needs the group's context"):
        model.predict_chunk(x[:2], None, [0, 1])
    with pytest.raises(ValueError, match="flip=True"):
        model.predict_chunk(x[:2], context, [0, 1], flip=True)
    with pytest.raises(ValueError, match="rows must give the group positions"):
        model.predict_chunk(x[:2], context, [3, 4])
    with pytest.raises(ValueError, match="rows must give the group positions"):
        model.predict_chunk(x[:2], context, [0])
    with pytest.raises(ValueError, match="a context per member"):
        CosegEnsemble([model, model]).predict_chunk(x[:2], [context], [0, 1])


def write_group(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` noisy images with a red square (the common object) at random places, odd sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        h, w = rng.integers(40, 70, size=2)
        image = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        image[y:y + h // 2, x:x + w // 2] = (40, 40, 220)  # BGR red
        paths.append(folder / f"{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


class Spy:
    """Watches a model: the largest batch its group methods see, and how many groups it gets whole."""

    def __init__(self, model) -> None:
        self.largest, self.whole_groups = 0, 0
        for name in ("predict_chunk", "chunk_keys", "predict_group"):
            setattr(model, name, self.wrap(getattr(model, name), name))

    def wrap(self, method, name: str):
        def spied(images, *args, **kwargs):
            self.largest = max(self.largest, len(images))
            self.whole_groups += name == "predict_group"
            return method(images, *args, **kwargs)
        return spied


class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, dataset) -> None:
        self.dataset, self.reads = dataset, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        return self.dataset[i]


@pytest.mark.parametrize("colour", [None, GroupColourCut(iterations=1, max_fit_images=3, scale=1.5)],
                         ids=["no-cut", "colour-cut"])
@pytest.mark.parametrize("original_size", [True, False], ids=["original-size", "model-size"])
def test_a_large_group_is_read_in_chunks_with_the_same_results(tmp_path, monkeypatch, colour, original_size):
    from coseg.inference import images_for, predict_dataset

    fitted = []  # the images and labels each colour fit saw, in order
    fit_selected = GroupColourCut.fit_selected

    def recording(self, pixels, labels):
        fitted.append((pixels.copy(), labels.copy()))
        return fit_selected(self, pixels, labels)

    monkeypatch.setattr(GroupColourCut, "fit_selected", recording)

    paths = write_group(tmp_path / "big", 7) + write_group(tmp_path / "small", 2, seed=1)
    groups = [0] * 7 + [1] * 2
    model = group_model()

    def run(stream_above: int) -> tuple[dict, CountingDataset, Spy]:
        dataset = CountingDataset(images_for(paths, 64, colour))
        spy = Spy(model)
        results = dict(predict_dataset(model, dataset, CPU, batch_size=2, groups=groups, flip=True,
                                       edges=EdgeFilter(), colour=colour, original_size=original_size,
                                       stream_above=stream_above))
        for name in ("predict_chunk", "chunk_keys", "predict_group"):
            vars(model).pop(name, None)
        return results, dataset, spy

    whole, whole_data, whole_spy = run(stream_above=100)
    whole_fits = fitted[:]
    fitted.clear()
    streamed, streamed_data, streamed_spy = run(stream_above=3)
    assert len(fitted) == len(whole_fits) == (2 if colour is not None else 0)
    by_size = lambda fits: sorted(fits, key=lambda fit: len(fit[0]))  # the small group's 2 images, the big one's 3
    for (a_pixels, a_labels), (b_pixels, b_labels) in zip(by_size(whole_fits), by_size(fitted)):
        assert np.array_equal(a_pixels, b_pixels)  # the same images, in the same order
        assert (a_labels == b_labels).mean() > 0.999
    assert sorted(streamed) == list(range(9))
    for i in range(9):
        a, b = whole[i], streamed[i]
        a, b = (a, b) if original_size else (a.numpy(), b.numpy())
        assert a.shape == b.shape
        if colour is None and not original_size:
            np.testing.assert_allclose(b, a, atol=1e-5)
        else:
            assert (a == b).mean() > 0.999
    assert whole_data.reads == 9
    assert streamed_data.reads == 2 + 7 * (3 if colour is not None else 2)  # the small group still read whole
    assert streamed_spy.largest == 2 and streamed_spy.whole_groups == 1  # the big group never held whole
    assert whole_spy.largest == 7


def test_an_unreadable_image_of_a_large_group_is_reported_once(tmp_path):
    from coseg.inference import images_for, predict_dataset

    paths = write_group(tmp_path / "big", 6)
    paths[2].write_bytes(b"not an image")
    model = group_model()
    colour = GroupColourCut(iterations=1, max_fit_images=2)
    runs = [list(predict_dataset(model, images_for(paths, 64, colour), CPU, batch_size=2, groups=[0] * 6,
                                 edges=EdgeFilter(), colour=colour, original_size=True, stream_above=above))
            for above in (100, 1)]
    for results in runs:
        assert sorted(i for i, _ in results) == list(range(6))
        errors = [r for i, r in results if isinstance(r, str)]
        assert len(errors) == 1 and "2.png" in errors[0]
    whole, streamed = (dict(r) for r in runs)
    for i in (0, 1, 3, 4, 5):
        assert (whole[i] == streamed[i]).mean() > 0.999


def test_a_large_group_of_unreadable_files_is_only_reported(tmp_path):
    from coseg.inference import images_for, predict_dataset

    paths = write_group(tmp_path / "big", 4)
    for path in paths:
        path.write_bytes(b"not an image")
    colour = GroupColourCut(iterations=1)
    results = list(predict_dataset(group_model(), images_for(paths, 64, colour), CPU, batch_size=2, groups=[0] * 4,
                                   colour=colour, stream_above=1))
    assert sorted(i for i, _ in results) == [0, 1, 2, 3] and all(isinstance(r, str) for _, r in results)


def test_reference_images_are_chosen_by_content_not_order():
    from coseg.models.cosegnet import reference_images

    keys = torch.nn.functional.normalize(torch.randn(10, 4, 6), dim=1)
    assert torch.equal(reference_images(keys, 10), torch.arange(10))
    chosen = reference_images(keys, 4)
    assert len(chosen) == 4 and torch.equal(chosen, chosen.unique())  # ascending, distinct
    perm = torch.randperm(10)
    assert torch.equal(perm[reference_images(keys[perm], 4)].sort().values, chosen)  # the same images
    with pytest.raises(ValueError, match="max_references must be >= 1"):
        reference_images(keys, 0)


def test_a_group_compared_with_reference_images_only():
    model = group_model()
    x = torch.rand(7, 3, 64, 64)
    everyone = model.predict_group(x, chunk_size=16)
    model.max_references = 3
    sampled = model.predict_group(x, chunk_size=16)  # beyond max_references, the chunked path with 3 references
    assert (sampled - everyone).abs().max() > 1e-4  # beyond the tolerance below: the references matter
    assert_close(chunked(model, x, 2), sampled, atol=1e-5, rtol=1e-4)
    assert_close(model.predict_group(x, chunk_size=3), sampled, atol=1e-5, rtol=1e-4)
    perm = torch.tensor([4, 6, 1, 0, 5, 3, 2])
    assert_close(model.predict_group(x[perm], chunk_size=16), sampled[perm], atol=1e-5, rtol=1e-4)
    context = model.group_context(x.split(4))
    assert context.plain.size == 7 and len(context.plain.positions) == 3 and context.plain.keys[0].shape[0] == 3
