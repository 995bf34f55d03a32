"""The retrieval side's Python API with realistic and wrong inputs: image dtypes and ranges, pooling against a naive
reference, head starts from too few features, export and search against a brute-force nearest-neighbour search."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from apps.retrieval import GeM, create_retrieval_model, load_retrieval_model
from apps.retrieval.export import export_folder
from apps.retrieval.head_init import head_weights
from apps.retrieval.inference import VIEWS
from apps.retrieval.pooling import AvgPool
from apps.retrieval.search import search_export
from coseg.data import read_image, resize_image
from tests.apps.retrieval_runs import BACKBONE
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def model():
    return create_retrieval_model(BACKBONE, weights=None, pooling="gem", embedding_dim=8).eval()


def test_images_of_any_float_dtype_embed_as_float32_ones(model):
    # was: float64 images failed inside the backbone ("expected scalar type Double but found Float")
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(x)
        assert_close(model(x.double()), reference, rtol=0, atol=1e-6)
        assert_close(model(x.half()), reference, rtol=0, atol=5e-3)
        assert_close(model(x.bfloat16()), reference, rtol=0, atol=3e-2)


def test_features_of_any_float_dtype_embed_as_float32_ones(model):
    # was: "mat1 and mat2 must have the same dtype" for float64 features (e.g. from numpy)
    features = torch.rand(3, model.feature_dim, dtype=torch.float64)
    with torch.no_grad():
        assert_close(model.embed_features(features), model.embed_features(features.float()), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["0-255", "negative", "NaN", "Inf"])
def test_images_outside_0_1_or_nan_are_refused(model, case):
    # was: embedded without a word (0-255 images as unit vectors of saturated features, NaN as NaN embeddings)
    x = torch.rand(2, 3, 32, 32)
    expected = r"images must be in \[0, 1\] .*got values from .* to .*; divide 0-255 images by 255"
    if case == "0-255":
        x = x * 255
    elif case == "negative":
        x = x * 2 - 1
    elif case == "NaN":
        x[1, 2, 3, 4] = float("nan")
        expected = "images hold NaN values"
    else:
        x[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=expected):
        model(x)
    with pytest.raises(ValueError, match=expected):
        model.features(x)


def test_uint8_images_are_refused_with_the_conversion():
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8)
    with pytest.raises(TypeError, match=r"float in \[0, 1\], got dtype torch.uint8; convert 0-255 images with "
                                        r"\.float\(\) / 255"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("value", [8.5, True, "8"])
def test_an_embedding_size_that_is_no_integer_is_named(value):
    # was: a TypeError from deep inside torch (empty(): argument 'size' ...) or a comparison of str and int
    with pytest.raises(TypeError, match=f"embedding_dim must be an integer, got {value!r}"):
        create_retrieval_model(BACKBONE, weights=None, embedding_dim=value)


@pytest.mark.parametrize("stages", ["12", 4, [1.7], [True]])
def test_pool_stages_that_are_no_list_of_ints_are_named(stages):
    # was: "12" read as stages [1, 2], 1.7 as stage 1, 4 "'int' object is not iterable"
    with pytest.raises(TypeError, match=r"pool_stages must be a list of stage indices \(ints\), got "):
        create_retrieval_model(BACKBONE, weights=None, embedding_dim=8, pool_stages=stages)


def naive_pool(x: np.ndarray, p: float, eps: float = 1e-6) -> np.ndarray:
    """(B, C, h, w) → (B, C): ``(mean max(x, eps)^p)^(1/p)`` by loops, in float64."""
    out = np.empty(x.shape[:2])
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[b, c] = np.mean([max(float(v), eps) ** p for v in x[b, c].ravel()]) ** (1 / p)
    return out


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 1, 5), (2, 2, 3, 2)])
def test_pooling_against_a_naive_loop(shape):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4 - 1
    assert_close(AvgPool()(x), torch.from_numpy(x.numpy().mean(axis=(2, 3))), rtol=0, atol=1e-12)
    for p in (1.0, 3.0, 7.5):
        out = GeM(p=p)(x)
        assert out.dtype == torch.float64  # was: float32, so a float64 model failed in its head
        assert_close(out.detach(), torch.from_numpy(naive_pool(x.numpy(), p)), rtol=1e-12, atol=0)


def test_a_float64_model_with_gem_embeds():
    # was: "mat1 and mat2 must have the same dtype" (GeM returned float32 features to the float64 head)
    model = create_retrieval_model(BACKBONE, weights=None, pooling="gem", embedding_dim=8).double().eval()
    with torch.no_grad():
        embeddings = model(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    assert embeddings.dtype == torch.float64
    assert_close(embeddings.norm(dim=1), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("pool", [AvgPool(), GeM()], ids=["avg", "gem"])
def test_pooling_refuses_an_empty_map(pool):
    # was: AvgPool gave NaN features, GeM an IndexError
    with pytest.raises(ValueError, match=r"feature map must have h, w >= 1 to be pooled, got shape \(2, 3, 0, 4\)"):
        pool(torch.rand(2, 3, 0, 4))


def test_gem_refuses_a_nan_power():
    # was: accepted, and every feature pooled to NaN
    with pytest.raises(ValueError, match="GeM needs p > 0 and eps > 0, got p=nan"):
        GeM(p=float("nan"))


def test_zoom_view_of_a_non_square_batch_crops_each_side():
    # was: the crop took the width's size and offset for the rows too
    x = torch.rand(1, 3, 8, 16)
    expected = F.interpolate(x[..., 0:7, 1:15], size=(8, 16), mode="bilinear", align_corners=False)
    assert_close(VIEWS[2](x), expected, rtol=0, atol=0)
    assert_close(VIEWS[3](x), expected.flip(-1), rtol=0, atol=0)


@pytest.mark.parametrize("how", ["pca", "pca_whiten"])
@pytest.mark.parametrize("rows", [0, 1])
def test_head_weights_need_two_images(how, rows):
    # was: 0 images gave a NaN bias, 1 arbitrary axes
    with pytest.raises(ValueError, match=f"head_init {how} needs the features of >= 2 images.*got {rows}"):
        head_weights(torch.randn(rows, 6, dtype=torch.float64), 4, how)


@pytest.mark.parametrize("how", ["pca", "pca_whiten"])
@pytest.mark.parametrize("size", [0, 7])
def test_head_weights_need_an_embedding_size_the_features_have(how, size):
    # was: embedding_dim > F gave a (F, F) weight, 0 a (0, F) one
    with pytest.raises(ValueError, match=rf"head_init {how} needs embedding_dim in \[1, 6\].*got {size}"):
        head_weights(torch.randn(10, 6, dtype=torch.float64), size, how)


@pytest.mark.parametrize("shrinkage", [float("nan"), float("inf")])
def test_class_whitening_refuses_a_shrinkage_that_is_no_finite_number(shrinkage):
    # was: linalg.eigh's "failed to converge because the input matrix is ill-conditioned"
    features, labels = torch.randn(12, 5, dtype=torch.float64), torch.arange(12) % 3
    with pytest.raises(ValueError, match=f"shrinkage must be > 0 and finite .*got {shrinkage}"):
        head_weights(features, 3, "class_whiten", labels, shrinkage)


def write(path: Path, array: np.ndarray, mode: Optional[str] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An export of odd images (sizes 1×1 to 37×53, grayscale, RGBA, two identical files, one unreadable) and the
    model it was made with."""
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    folder = root / "collection"
    write(folder / "a" / "rgb.png", rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    write(folder / "a" / "gray.png", rng.integers(0, 256, (20, 80), dtype=np.uint8))
    write(folder / "b" / "rgba.png", rng.integers(0, 256, (31, 31, 4), dtype=np.uint8), "RGBA")
    write(folder / "b" / "pixel.png", rng.integers(0, 256, (1, 1, 3), dtype=np.uint8))
    (folder / "b" / "copy.png").write_bytes(write(folder / "b" / "x.png", rng.integers(0, 256, (64, 48, 3),
                                                                                         dtype=np.uint8)).read_bytes())
    (folder / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    checkpoint = root / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint, metadata={"image_size": "32"})
    export_folder(checkpoint, folder, root / "index")
    return folder, root / "index", checkpoint


def test_search_equals_a_brute_force_nearest_neighbour_search(exported):
    folder, index, checkpoint = exported
    embeddings = np.load(index / "embeddings.npy")
    with open(index / "manifest.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert paths == ["a/gray.png", "a/rgb.png", "b/copy.png", "b/pixel.png", "b/rgba.png", "b/x.png"]
    assert_close(np.linalg.norm(embeddings, axis=1), np.ones(6), rtol=0, atol=1e-6)
    model = load_retrieval_model(checkpoint).eval()
    queries = [folder / "a" / "rgb.png", folder / "b" / "copy.png", folder / "b" / "broken.jpg"]
    result = search_export(index, queries, k=10)  # k beyond the 6 exported images: every one, ranked
    assert result.exported == 6 and len(result.skipped) == 1 and "broken.jpg: " in result.skipped[0]
    for query in queries[:2]:
        pixels = torch.from_numpy(resize_image(read_image(query), 32)).permute(2, 0, 1)
        with torch.no_grad():
            vector = model(pixels[None].float() / 255).numpy()[0]
        distances = np.sqrt(((embeddings.astype(np.float64) - vector) ** 2).sum(1))
        found = [n for n in result.neighbours if n.query == str(query)]
        assert [n.rank for n in found] == [1, 2, 3, 4, 5, 6]
        assert sorted(n.path for n in found) == paths  # each exported image once, at its own distance, in order
        assert_close(np.array([n.distance for n in found]), np.array([distances[paths.index(n.path)] for n in found]),
                     rtol=0, atol=1e-5)
        assert_close(np.array([n.distance for n in found]), np.sort(distances), rtol=0, atol=1e-5)
    copy = [n for n in result.neighbours if n.query == str(queries[1])]
    assert {n.path for n in copy[:2]} == {"b/copy.png", "b/x.png"} and copy[1].distance < 1e-6  # identical files


def test_search_names_a_single_path_given_as_the_queries(exported):
    # was: each of its characters was a query: '/' the root folder, then "t: query image not found"
    folder, index, _ = exported
    with pytest.raises(TypeError, match="queries must be a list of image files or folders, got the single path"):
        search_export(index, str(folder / "a" / "rgb.png"))


def test_export_names_a_file_given_as_its_folder(exported, tmp_path):
    # was: "input folder not found", of a file that is there
    folder, _, checkpoint = exported
    with pytest.raises(ValueError, match="rgb.png: a file, not a folder of images"):
        export_folder(checkpoint, folder / "a" / "rgb.png", tmp_path / "out")


def test_a_query_folder_without_images_is_listed_and_the_others_searched(exported, tmp_path):
    # was: "no images found under ... in layout 'folders'" stopped the whole search
    folder, index, _ = exported
    empty = tmp_path / "empty"
    empty.mkdir()
    result = search_export(index, [empty, folder / "a" / "rgb.png"], k=2)
    assert [n.rank for n in result.neighbours] == [1, 2] and result.skipped == [f"{empty}: a folder without images"]
    with pytest.raises(ValueError, match=r"cannot read any query \(1 unusable file\(s\) or folder\(s\)\): "
                                         r".*empty: a folder without images"):
        search_export(index, [empty], k=2)


@pytest.mark.parametrize("k", [0, 2.5, True])
def test_search_names_a_k_that_is_no_positive_integer(exported, k):
    # was: 2.5 a TypeError from faiss's search, True searched 1 neighbour
    folder, index, _ = exported
    with pytest.raises(ValueError, match=f"k must be an integer >= 1, got {k!r}"):
        search_export(index, [folder / "a" / "rgb.png"], k=k)
