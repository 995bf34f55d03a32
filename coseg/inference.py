"""Batched inference: the one prediction loop behind validation, evaluation and ``coseg predict``."""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Executor
from contextlib import ExitStack, closing
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar, Union

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from coseg.data import CosegDataset, DataFileError, Sample, printable, read_image_for_size, resize_image
from coseg.data.cache import check_image_size
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, GroupTooSmall, Model
from coseg.models.colour_cut import image_digest
from metric._checks import check_count
from metric.threads import single_threaded_pool, start_single_threaded

T = TypeVar("T")


class ImageFileDataset(Dataset):
    """Images decoded on demand (for folders too large to cache) and resized to ``image_size`` (large JPEGs are
    decoded at a reduced scale: ``read_image_for_size``); with ``cut_size``, each also resized to that side for the
    colour cut (:meth:`GroupColourCut.size_for <coseg.models.GroupColourCut.size_for>`), from the same decode.

    Item: ``{"image": uint8 (3, S, S), "index": i, "size": (2,) original (H, W)}`` (+ ``"cut_image"``: uint8
    (3, C, C)), or ``{"index": i, "error": "<file>: <problem>"}`` for a file that cannot be read (the batch goes on
    without it)."""

    def __init__(self, paths: Sequence[Path], image_size: int, cut_size: Optional[int] = None) -> None:
        check_image_size(image_size)
        self.paths = list(paths)
        self.image_size = image_size
        self.cut_size = cut_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            image, size = read_image_for_size(self.paths[i], max(self.image_size, self.cut_size or 0))
        except DataFileError as e:
            return {"index": i, "error": str(e)}
        item = {"image": _chw(resize_image(image, self.image_size)), "index": i,
                "size": torch.tensor(size, dtype=torch.long)}
        if self.cut_size is not None:
            item["cut_image"] = _chw(resize_image(image, self.cut_size))
        return item


def images_for(paths: Sequence[Path], image_size: int, colour: Optional[GroupColourCut]) -> ImageFileDataset:
    """The images to predict at ``image_size``, with the colour cut's own size when there is one."""
    return ImageFileDataset(paths, image_size, cut_size=colour.size_for(image_size) if colour is not None else None)


def _chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → contiguous (3, H, W) tensor."""
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def collate_images(items: list[dict]) -> dict:
    """Batch image (and cut image), index and original size; items that failed to decode are passed on under
    ``errors``."""
    good = [it for it in items if "error" not in it]
    batch = {
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "size": torch.stack([it["size"] for it in good]) if good else torch.empty(0, 2, dtype=torch.long),
        "errors": [(it["index"], it["error"]) for it in items if "error" in it],
    }
    if good and "cut_image" in good[0]:
        batch["cut_image"] = torch.stack([it["cut_image"] for it in good])
    return batch


def group_ids(samples: Sequence[Sample]) -> list[int]:
    """One integer id per sample, equal for samples of the same group."""
    index: dict[str, int] = {}
    return [index.setdefault(s.group, len(index)) for s in samples]


def group_batches(groups: Sequence[int]) -> list[list[int]]:
    """Dataset indices grouped by group id (one batch per group), groups in order of first appearance."""
    batches: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        batches.setdefault(int(group), []).append(index)
    return list(batches.values())


STREAM_ABOVE = 128  # images: larger groups are read in chunks (a group held whole costs ~6-10 MB per image)
ROWS_PER_BAND = 256
DIRECT_PIXELS = 1 << 22  # masks up to this size are resized in one call (its float image: 16 MiB)


def _linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (below, above) and weights of each output position of a 1-D bilinear resize with
    half-pixel centres (``F.interpolate(..., align_corners=False)``)."""
    source = np.maximum((np.arange(size_out, dtype=np.float32) + 0.5) * np.float32(size_in / size_out) - 0.5, 0)
    below = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    above = np.minimum(below + 1, size_in - 1)
    return below, above, (source - below).astype(np.float32)


def foreground_at_size(prob: torch.Tensor, size: tuple[int, int], threshold: float = 0.5,
                       direct_pixels: int = DIRECT_PIXELS) -> np.ndarray:
    """``prob`` (h, w) resized bilinearly to ``size`` = (H, W) (half-pixel centres, as ``F.interpolate`` with
    ``align_corners=False``; OpenCV's float weights agree with it to ~2e-5), then ``>= threshold``: (H, W) bool.

    Masks of up to ``direct_pixels`` pixels are resized by one ``cv2.resize``; larger ones row-wise first, then in
    bands of output rows, so a 10,000 × 10,000 mask costs its 100 MB of bools, not a 400 MB float image."""
    height, width = size
    p = np.ascontiguousarray(prob.detach().cpu().float().numpy())
    if height * width <= direct_pixels:
        return cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) >= threshold
    wide = cv2.resize(p, (width, p.shape[0]), interpolation=cv2.INTER_LINEAR)  # (h, W)
    top_rows, bottom_rows, wy = _linear_taps(p.shape[0], height)
    out = np.empty((height, width), dtype=bool)
    for top in range(0, height, ROWS_PER_BAND):
        rows = slice(top, min(top + ROWS_PER_BAND, height))
        weight = wy[rows, None]
        band = wide[top_rows[rows]] * (1 - weight) + wide[bottom_rows[rows]] * weight
        np.greater_equal(band, threshold, out=out[rows])
    return out


def usable_cores() -> int:
    """The number of cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def spare_cpu(device: torch.device) -> bool:
    """Whether helper threads (decoding the next batch, encoding outputs) get a core of their own: the model runs
    on a GPU, or this process may use more cores than torch's threads. Where the model fills every core they gain
    nothing (2 cores, iCoseg test8: predict at 0.884 of the raw forward with them, 0.885 without, medians of 15
    rounds) and only widen the spread."""
    return device.type != "cpu" or usable_cores() > torch.get_num_threads()


def read_batches(dataset: Dataset, batches: Iterable[Sequence[int]], pool: Executor,
                 pin_memory: bool = False) -> Iterator[dict]:
    """The collated items (``collate_images``) of each batch of dataset indices, the items of a batch read by
    ``pool``'s threads at once: image decoding and resizing release the GIL, so between two model calls, when the
    model leaves the cores idle, a batch is read on all of them instead of one."""
    for indices in batches:
        batch = collate_images(list(pool.map(dataset.__getitem__, indices)))
        if pin_memory:
            batch["image"] = batch["image"].pin_memory()
        yield batch


def prefetched(iterable: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of ``iterable``, produced by a background thread up to ``depth`` items ahead (image decoding
    releases the GIL, so the next batch is decoded while the model works on this one). An exception in the
    producer is raised here; leaving the loop early stops the producer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as error:  # handed to the consumer
            put((end, error))

    producer = start_single_threaded(produce, name="prefetch")
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        producer.join()


def cut_images(batch: dict) -> torch.Tensor:
    """A collated batch's images for the colour cut: its ``cut_image`` where the dataset gives one
    (``ImageFileDataset``'s ``cut_size``), else its ``image``."""
    return batch.get("cut_image", batch["image"])


def cut_by_colour(colour: GroupColourCut, images: torch.Tensor, probs: torch.Tensor, pool: Executor,
                  grouped: bool) -> torch.Tensor:
    """uint8 images (N, 3, C, C), probabilities (N, S, S) on the CPU (S ≤ C) → 0/1 masks (N, C, C): one group cut
    with shared colour models (its images cut in ``pool``), or, not ``grouped``, every image cut alone."""
    if grouped:
        return colour(images, probs[:, None], pool.map)[:, 0]
    return torch.cat(list(pool.map(lambda i: colour(images[i:i + 1], probs[i:i + 1, None])[:, 0],
                                   range(len(probs)))))


def mixed_precision(device: torch.device) -> bool:
    """Whether the model runs under ``torch.autocast`` (float16) on ``device``: on CUDA."""
    return device.type == "cuda"


def all_finite(value: object) -> bool:
    """Whether every floating-point tensor in ``value`` (a tensor, or tensors nested in tuples and lists, such as a
    group's context) holds only finite numbers."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return all(map(all_finite, value))
    return True


def run_model(call: Callable[[bool], T], device: torch.device) -> T:
    """The result of a model call, ``call(half)``: on a device with :func:`mixed_precision`, first under autocast
    (``half`` True); where that result holds a non-finite value (a float16 overflow), once more in float32
    (``half`` False), whose result is returned, finite or not. Elsewhere ``call(False)``, in float32."""
    half = mixed_precision(device)
    with torch.autocast(device.type, enabled=half):
        result = call(half)
    if half and not all_finite(result):
        result = call(False)
    return result


NON_FINITE = "the model gave non-finite (NaN/inf) foreground probabilities"


def item_file(dataset: Dataset, index: int) -> str:
    """The file item ``index`` of ``dataset`` was read from, printable (``ImageFileDataset``'s path,
    ``CosegDataset``'s sample image); ``item <index>`` for another kind of dataset."""
    if isinstance(dataset, ImageFileDataset):
        return printable(dataset.paths[index])
    if isinstance(dataset, CosegDataset):
        return printable(dataset.samples[index].image)
    return f"item {index}"


def drop_non_finite(dataset: Dataset, batch: dict, probs: torch.Tensor
                    ) -> tuple[list[tuple[int, str]], dict, torch.Tensor]:
    """The items of a collated ``batch`` (``collate_images``) whose probabilities (B, S, S) hold a non-finite
    value, reported as an unreadable file is and left out: ``(index, "<file>: <problem>")`` for each, the batch of
    the others (its tensors ``image``, ``index``, ``size`` and ``cut_image`` cut down to them) and their
    probabilities (B', S, S)."""
    finite = torch.isfinite(probs.flatten(1)).all(1)
    if bool(finite.all()):
        return [], batch, probs
    reports = [(index, f"{item_file(dataset, index)}: {NON_FINITE}") for index in batch["index"][~finite].tolist()]
    kept = {key: value[finite] for key, value in batch.items() if isinstance(value, torch.Tensor)}
    return reports, {**batch, **kept}, probs[finite]


def check_group_steps(group_mode: bool, refinement: Optional[GroupRefinement],
                      statistics: Optional[GroupStatistics]) -> None:
    """Refuse (``ValueError``) ``refinement`` or ``statistics``, which work on a group's images together, without
    ``group_mode``: callers check it before writing anything, so a refused run leaves its output folder as it was."""
    if not group_mode and (refinement is not None or statistics is not None):
        raise ValueError("group refinement and group statistics work on a group's images together: they need group "
                         "mode, not single-image mode (--single-image)")


def predict_dataset(model: Model, dataset: Dataset, device: torch.device, batch_size: int = 8, workers: int = 0,
                    original_size: bool = False, groups: Optional[Sequence[int]] = None,
                    refinement: Optional[GroupRefinement] = None, flip: bool = False,
                    edges: Optional[EdgeFilter] = None, colour: Optional[GroupColourCut] = None,
                    statistics: Optional[GroupStatistics] = None, stream_above: int = STREAM_ABOVE
                    ) -> Iterator[tuple[int, Union[torch.Tensor, np.ndarray, str]]]:
    """Yield ``(index, foreground probability (S, S) float32 on the CPU)`` for every item of ``dataset`` (a
    CosegDataset or ImageFileDataset), or with ``original_size`` its foreground mask ((H, W) bool numpy, the
    probability resized to the image's original size and thresholded at 0.5: ``foreground_at_size``); for an item
    that could not be read, whose probabilities are not all finite (NaN/inf: a broken model), or whose group is too
    small for ``statistics`` to measure (:class:`~coseg.models.GroupTooSmall`), ``(index, error message naming its
    file)``. On CUDA the model runs under autocast (float16), and a batch whose probabilities are
    not all finite there is run again in float32 (:func:`run_model`).

    ``groups`` (one id per item): group mode, each group is predicted together (``model.predict_group``, in
    chunks of ``batch_size`` images sharing the group's consensus), with the BatchNorm statistics adapted to the
    group (``statistics``) and optionally refined through the group's pixel embeddings (``refinement``);
    otherwise images are predicted alone (``statistics`` and ``refinement``, which need groups, are refused).
    ``flip``: each prediction averaged with that of the mirrored image (test-time augmentation, twice the model
    time). ``edges``: the probabilities guided-filtered by their images (:class:`~coseg.models.EdgeFilter`) before
    resizing. ``colour``: then each group's masks cut with colour models shared by the group
    (:class:`~coseg.models.GroupColourCut`; each image alone without ``groups``), on the batch's ``cut_image``
    where the dataset gives one (``ImageFileDataset``'s ``cut_size``: ``colour.size_for(S)``), else on ``image``;
    the probabilities become 0/1 masks of the cut's size (an image whose probabilities are reported non-finite is
    left out of its group's cut).

    A group of more than ``stream_above`` images (without ``refinement`` or ``statistics``, which need the whole
    group at once) is read from the dataset in chunks of ``batch_size``, two or three times, instead of being held
    in memory (:func:`predict_large_group`); the other groups are read whole."""
    check_count(batch_size, 1, "batch_size")
    check_count(workers, 0, "workers")
    check_group_steps(groups is not None, refinement, statistics)
    streamed: list[list[int]] = []
    if groups is not None:
        if len(groups) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"groups has {len(groups)} entries for {len(dataset)} images")  # type: ignore[arg-type]
        batches = group_batches(groups)
        if refinement is None and statistics is None:
            streamed = [b for b in batches if len(b) > stream_above]
            batches = [b for b in batches if len(b) <= stream_above]
    else:
        batches = _chunked(range(len(dataset)), batch_size)  # type: ignore[arg-type]

    def predicted(images: torch.Tensor, half: bool) -> torch.Tensor:
        """The probabilities (B, S, S) of a batch's images (B, 3, S, S) (one group's in group mode), in whichever
        precision :func:`run_model` runs it (``half``)."""
        if groups is None:
            return model.predict(images, flip=flip, edges=edges)[:, 0].float()
        return model.predict_group(images, chunk_size=batch_size, refinement=refinement, flip=flip, edges=edges,
                                   statistics=statistics)[:, 0].float()

    with single_threaded_pool(usable_cores()) as pool, ExitStack() as stack:
        if workers > 0:
            loader: Iterable[dict] = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                                collate_fn=collate_images, pin_memory=device.type == "cuda")
        else:
            loader = read_batches(dataset, batches, pool, pin_memory=device.type == "cuda")
            if spare_cpu(device):  # its reading thread stops before the pool does
                loader = stack.enter_context(closing(prefetched(loader)))
        for batch in loader:
            yield from batch["errors"]
            if not len(batch["index"]):
                continue
            try:
                probs = run_model(partial(predicted, _model_images(batch, device)), device).cpu()
            except GroupTooSmall as e:  # the group's images are reported; the other groups go on
                yield from ((index, f"{item_file(dataset, index)}: {e}") for index in batch["index"].tolist())
                continue
            reports, batch, probs = drop_non_finite(dataset, batch, probs)
            yield from reports
            if not len(probs):
                continue
            if colour is not None:
                probs = cut_by_colour(colour, cut_images(batch), probs, pool, grouped=groups is not None)
            yield from _results(batch["index"].tolist(), probs, batch["size"], original_size, pool)
        for indices in streamed:
            yield from predict_large_group(model, dataset, indices, device, batch_size, pool, flip=flip, edges=edges,
                                           colour=colour, original_size=original_size)


def _results(indices: Sequence[int], probs: Sequence[torch.Tensor], sizes: torch.Tensor, original_size: bool,
             pool: Executor) -> Iterator[tuple[int, Union[torch.Tensor, np.ndarray]]]:
    """``(index, probability)`` pairs, or with ``original_size`` ``(index, mask at the image's original size)``."""
    if original_size:
        yield from zip(indices, pool.map(foreground_at_size, probs, [tuple(size) for size in sizes.tolist()]))
    else:
        yield from zip(indices, probs)


def _chunked(items: Sequence[int], size: int) -> list[list[int]]:
    """``items`` in consecutive lists of ``size`` (the last one shorter)."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _model_images(batch: dict, device: torch.device) -> torch.Tensor:
    """A batch's uint8 images (B, 3, S, S) as the model's input: float in [0, 1] on ``device``, channels_last."""
    images = batch["image"].to(device, non_blocking=True).float().div_(255)
    return images.contiguous(memory_format=torch.channels_last)  # models for inference are channels_last


def predict_large_group(model: Model, dataset: Dataset, indices: Sequence[int], device: torch.device,
                        chunk_size: int, pool: Executor, flip: bool = False, edges: Optional[EdgeFilter] = None,
                        colour: Optional[GroupColourCut] = None, original_size: bool = False
                        ) -> Iterator[tuple[int, Union[torch.Tensor, np.ndarray, str]]]:
    """The results of :func:`predict_dataset` for one group (its dataset ``indices``), with memory bounded by
    ``chunk_size`` images instead of the group's size. The images are read three times: once for the group's
    context (``model.group_context``, with each cut image's digest), once to predict each chunk in that context
    (keeping only the probabilities, and the cut images the colour models are fitted on), once to cut each image
    with the group's colour models. Without ``colour``, two reads, and each chunk's results come out as they are
    made. An image that cannot be read, or whose probabilities are not all finite, is reported once and left out
    (of the colour cut too). On CUDA, a chunk whose float16 probabilities are not all finite is predicted again in
    float32, in a float32 context of the group (:func:`run_model`; one more read of the group, once); an image that
    cannot be read any more then (its file changed during the run) is left out of that context and, where its chunk
    is predicted in it, reported as unreadable."""
    chunks = _chunked(indices, chunk_size)
    readable: list[int] = []
    failed: list[tuple[int, str]] = []
    digests: dict[int, bytes] = {}

    def first_read() -> Iterator[torch.Tensor]:
        for batch in read_batches(dataset, chunks, pool):
            failed.extend(batch["errors"])
            if len(batch["index"]):
                readable.extend(batch["index"].tolist())
                if colour is not None:
                    digests.update(zip(batch["index"].tolist(),
                                       map(image_digest, cut_images(batch).permute(0, 2, 3, 1).numpy())))
                yield _model_images(batch, device)

    contexts: dict[bool, Any] = {}  # the group's context, by whether it was taken under autocast
    positions: dict[bool, dict[int, int]] = {}  # each context's group position of each dataset index in it
    changed: dict[int, str] = {}  # the images unreadable at the float32 context's read: left out of it

    def context(half: bool) -> Any:
        """The group's context (``model.group_context``) in the precision ``half`` says (a float32 run needs a
        float32 context): the first one taken during the first read, another one (when a float16 result was not
        finite) from one more read of the readable images, without those that cannot be read any more."""
        if half not in contexts:
            contexts[half] = model.group_context(reread() if contexts else first_read(), flip=flip)
            positions[half] = {index: k for k, index in enumerate(i for i in readable if i not in changed)}
        return contexts[half]

    def reread() -> Iterator[torch.Tensor]:
        for batch in read_batches(dataset, _chunked(readable, chunk_size), pool):
            changed.update((index, f"{error} (read before: the file changed while its group was predicted)")
                           for index, error in batch["errors"])
            if len(batch["index"]):
                yield _model_images(batch, device)

    def in_context(images: torch.Tensor, indices: list[int], half: bool) -> torch.Tensor:
        """The probabilities (B, S, S) of a chunk's images (B, 3, S, S), the dataset's ``indices``, in the group's
        context of precision ``half``; NaN for an image left out of that context."""
        group, rows = context(half), positions[half]
        kept = [k for k, index in enumerate(indices) if index in rows]
        probs = torch.full((len(indices), *images.shape[-2:]), torch.nan, device=images.device)
        if kept:
            chunk = images if len(kept) == len(indices) else images[kept]
            probs[kept] = model.predict_chunk(chunk, group, [rows[indices[k]] for k in kept], flip=flip,
                                              edges=edges)[:, 0].float()
        return probs

    run_model(context, device)  # the first read: the group's context (again in float32 if not finite)
    yield from failed
    if not readable:
        return
    chunks = _chunked(readable, chunk_size)
    fit_order = [] if colour is None else [readable[i] for i in colour.fit_images([digests[i] for i in readable])]
    fitted = set(fit_order)
    probs: dict[int, torch.Tensor] = {}
    fit_images: dict[int, torch.Tensor] = {}
    for batch in read_batches(dataset, chunks, pool):
        yield from batch["errors"]
        if not len(batch["index"]):
            continue
        chunk_probs = run_model(partial(in_context, _model_images(batch, device), batch["index"].tolist()),
                                device).cpu()
        reports, batch, chunk_probs = drop_non_finite(dataset, batch, chunk_probs)
        yield from ((index, changed.get(index, report)) for index, report in reports)
        batch_indices = batch["index"].tolist()
        if colour is None:
            yield from _results(batch_indices, chunk_probs, batch["size"], original_size, pool)
            continue
        for k, index in enumerate(batch_indices):
            probs[index] = chunk_probs[k]
            if index in fitted:
                fit_images[index] = cut_images(batch)[k]
    if colour is None:
        return
    order = [i for i in fit_order if i in fit_images]
    models = None
    if order:
        pixels, labels, _ = colour.prepare(torch.stack([fit_images[i] for i in order]),
                                           torch.stack([probs[i] for i in order])[:, None])
        models = colour.fit_selected(pixels, labels)
    fit_images.clear()
    chunks = [[i for i in chunk if i in probs] for chunk in chunks]
    for batch in read_batches(dataset, [c for c in chunks if c], pool):
        yield from batch["errors"]
        if not len(batch["index"]):
            continue
        batch_indices = batch["index"].tolist()
        prepared = colour.prepare(cut_images(batch), torch.stack([probs.pop(i) for i in batch_indices])[:, None])
        masks = colour.apply(models, *prepared, pool.map)[:, 0]
        yield from _results(batch_indices, masks, batch["size"], original_size, pool)
