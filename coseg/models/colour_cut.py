"""Group colour cut at inference: GrabCut (OpenCV) with foreground and background colour models shared by the group.

The network's mask is a good guess of where the common object is but misses parts of it (a bear's dark legs, an
elephant's far side) and its boundaries follow 1/4-resolution features. The object looks alike across the group,
so its colours, learnt from *all* the group's images (their confident pixels fixed, the others starting from the
mask), tell the uncertain pixels of each image apart: one GrabCut fit (Gaussian-mixture colour models + graph
cut, iterated) on the group's images side by side, then one graph cut per image with those shared, frozen models.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from coseg.config import MAX_COLOUR_SCALE
from metric._checks import check_count, check_shape

T = TypeVar("T")
R = TypeVar("R")
MapFn = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


@dataclass(frozen=True)
class GroupColourCut:
    """``iterations``: GrabCut rounds fitting the group's colour models (OpenCV's 5-component Gaussian mixtures).
    ``sure``: pixels with foreground probability ≥ ``sure`` stay foreground, ≤ 1 − ``sure`` stay background; the
    rest start from the probability thresholded at 0.5 (≥ 0.5 is foreground, as in
    :func:`~coseg.inference.foreground_at_size`) and may flip. ``max_fit_images``: the models are fitted on
    at most this many of the group's images (spread over the group), which bounds the cost for large groups;
    every image is then cut with them. ``max_fit_pixels``: the images the models are fitted on are shrunk (for the
    fit only, never for the cut) when together they hold more pixels than this, to about this many: a bound on the
    fit's memory (~200 bytes a pixel) and time at large input sides (16 images of 1536 px: 7.5 GB and 57 s
    unbounded); 16 images of 336 px (the default's, 1.8 M pixels) or 448 px (3.2 M) are fitted at full size, as
    before. ``scale``: the cut runs on images of ``scale`` × the model's input side (:meth:`size_for`; on iCoseg's
    validation 1.5 gained +0.7 J over 1 averaged over four models, for ~2.5× the cut's time:
    docs/icoseg_experiments.md)."""

    iterations: int = 3
    sure: float = 0.9
    max_fit_images: int = 16
    max_fit_pixels: int = 4_000_000
    scale: float = 1.5

    def __post_init__(self) -> None:
        check_count(self.iterations, 1, "colour cut iterations")
        if not 0.5 < self.sure <= 1:
            raise ValueError(f"colour cut 'sure' must be in (0.5, 1], got {self.sure}")
        check_count(self.max_fit_images, 1, "colour cut max_fit_images")
        check_count(self.max_fit_pixels, 1, "colour cut max_fit_pixels")
        if not 1 <= self.scale <= MAX_COLOUR_SCALE:  # NaN too
            raise ValueError(f"colour cut scale must be a finite number in [1, {MAX_COLOUR_SCALE:g}] (times the "
                             f"model's input side), got {self.scale}")

    def size_for(self, image_size: int) -> int:
        """Side in pixels of the images the cut runs on, for a model whose input side is ``image_size``."""
        return round(self.scale * image_size)

    def trimap(self, probs: np.ndarray) -> np.ndarray:
        """(..., H, W) foreground probabilities → GrabCut labels (..., H, W) uint8: sure foreground/background
        (``sure``), else probable foreground from 0.5 up, probable background below."""
        labels = np.where(probs >= 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        labels[probs >= self.sure] = cv2.GC_FGD
        labels[probs <= 1 - self.sure] = cv2.GC_BGD
        return labels

    def __call__(self, images: torch.Tensor, probs: torch.Tensor, map_fn: MapFn = map) -> torch.Tensor:
        """images uint8 (N, 3, H, W), foreground probabilities (N, 1, h, w) of one group (upsampled bilinearly to
        (H, W) when smaller) → foreground masks (N, 1, H, W) float32 in {0, 1} on the CPU. The result for an image
        does not depend on the order of the group's images. A group whose probabilities thresholded at 0.5 hold no
        foreground or no background is returned thresholded (there is nothing to learn colours from); one without
        confident pixels (none ≥ ``sure`` or none ≤ 1 − ``sure``) is cut all the same, nothing of it fixed, so a weak
        model's masks may grow or vanish (on the 4 unseen groups of a weak 3-minute demo model, cutting such groups
        too gave 51.8 J against 45.9 with them left thresholded, though one group lost 35 J). ``map_fn``: how the
        per-image cuts are run (e.g. a thread pool's ``map``; OpenCV releases the GIL)."""
        pixels, labels, probs = self.prepare(images, probs)
        return self.apply(self.fit(pixels, labels), pixels, labels, probs, map_fn)

    def apply(self, models: Optional[tuple[np.ndarray, np.ndarray]], pixels: np.ndarray, labels: np.ndarray,
              probs: torch.Tensor, map_fn: MapFn = map) -> torch.Tensor:
        """Images prepared by :meth:`prepare` (pixels, labels, probabilities (N, 1, H, W)) cut with the group's
        ``models`` (:meth:`fit`) → masks (N, 1, H, W) float32 in {0, 1}; without models, the probabilities
        thresholded at 0.5 (``>= 0.5``)."""
        if models is None:
            return (probs >= 0.5).float()
        masks = np.stack(list(map_fn(lambda i: self.cut(pixels[i], labels[i], models), range(len(pixels)))))
        return torch.from_numpy(masks.astype(np.float32)).unsqueeze(1)

    @staticmethod
    def cut(pixels: np.ndarray, labels: np.ndarray, models: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """One image's pixels (H, W, 3) uint8 and GrabCut labels (H, W) (:meth:`trimap`) → (H, W) bool foreground,
        cut with the group's frozen colour ``models`` (:meth:`fit`)."""
        if labels.size == 1:  # OpenCV's graph cut needs an edge: a pixel cut beside its copy is cut alike
            return GroupColourCut.cut(np.repeat(pixels, 2, axis=1), np.repeat(labels, 2, axis=1), models)[:, :1]
        mask = labels.copy()
        cv2.grabCut(pixels, mask, None, models[0].copy(), models[1].copy(), 1, cv2.GC_EVAL_FREEZE_MODEL)
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)

    def prepare(self, images: torch.Tensor, probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """images uint8 (N, 3, H, W), foreground probabilities (N, 1, h, w) → the pixels (N, H, W, 3) uint8, their
        GrabCut labels (N, H, W) (:meth:`trimap`) and the probabilities (N, 1, H, W) float32 on the CPU, upsampled
        bilinearly when smaller than the images."""
        size = check_shape(images, ["N", "3", "H", "W"], "images")
        at = check_shape(probs, [str(size["N"]), "1", "h", "w"], "probs (one per image)")
        if images.dtype != torch.uint8:
            raise TypeError(f"colour cut images must be uint8 (0-255), got {images.dtype}")
        if at["h"] > size["H"] or at["w"] > size["W"]:
            raise ValueError(f"colour cut probs ({at['h']} x {at['w']}) must not be larger than the images "
                             f"({size['H']} x {size['W']})")
        probs = probs.detach().float().cpu()
        outside = int((~((probs >= 0) & (probs <= 1))).sum())
        if outside:
            raise ValueError(f"colour cut probs must be foreground probabilities in [0, 1], got {outside} value(s) "
                             f"outside it or NaN")
        if (at["h"], at["w"]) != (size["H"], size["W"]):
            probs = F.interpolate(probs, size=(size["H"], size["W"]), mode="bilinear", align_corners=False)
        pixels = np.ascontiguousarray(images.cpu().permute(0, 2, 3, 1).numpy())  # (N, H, W, 3)
        labels = self.trimap(probs.numpy()[:, 0])  # (N, H, W)
        return pixels, labels, probs

    def fit(self, pixels: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(background, foreground) GrabCut models fitted on the group's images (N, H, W, 3) stacked into one, in
        an order fixed by their content (so that it does not depend on the order given); None without foreground
        or background pixels to fit on."""
        order = self.fit_images([image_digest(image) for image in pixels])
        return self.fit_selected(pixels[order], labels[order])

    def fit_images(self, digests: Sequence[bytes]) -> list[int]:
        """Which of a group's images the colour models are fitted on, in which order, from each image's
        :func:`image_digest`: at most ``max_fit_images``, spread over the group sorted by digest (:func:`spread`)."""
        return spread(digests, self.max_fit_images)

    def fit_selected(self, pixels: np.ndarray, labels: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(background, foreground) GrabCut models fitted on these images (n, H, W, 3) and labels (n, H, W) stacked
        into one, in the order given (:meth:`fit_images`), each shrunk first when they hold more than
        ``max_fit_pixels`` (:meth:`fit_shape`); None without foreground or background pixels (or without images)."""
        if not len(labels):
            return None
        height, width = self.fit_shape(*labels.shape)
        if (height, width) != labels.shape[1:]:
            pixels = np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in pixels])
            labels = np.stack([cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
                               for label in labels])  # each pixel's label from the centre of its area, as its colour
        mosaic = np.ascontiguousarray(np.concatenate(list(pixels)))
        mask = np.concatenate(list(labels))
        foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if foreground.all() or not foreground.any():
            return None
        background, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.setRNGSeed(0)  # GrabCut's k-means initialisation draws from OpenCV's (per-thread) generator
        cv2.grabCut(mosaic, mask, None, background, foreground_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        return background, foreground_model

    def fit_shape(self, n: int, height: int, width: int) -> tuple[int, int]:
        """Side (height, width) the ``n`` images (height, width) the models are fitted on are shrunk to: unchanged
        when they hold at most ``max_fit_pixels`` together, else about that many in all (never more, but at least a
        pixel an image), keeping their aspect."""
        if n * height * width <= self.max_fit_pixels:
            return height, width
        each = max(1, self.max_fit_pixels // n)
        shrunk = min(each, max(1, int(height * math.sqrt(each / (height * width)))))
        return shrunk, min(width, each // shrunk)


def image_digest(pixels: np.ndarray) -> bytes:
    """A digest of an image's pixels (e.g. (H, W, 3) uint8), which orders a group's images by content."""
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).digest()


def spread(digests: Sequence[bytes], limit: int) -> list[int]:
    """Positions of at most ``limit`` of the items whose content ``digests`` are given, spread evenly over the items
    sorted by digest: a choice, and an order, that do not depend on the order the items come in."""
    order = sorted(range(len(digests)), key=lambda i: digests[i])
    if len(order) > limit:
        order = [order[int(i)] for i in np.linspace(0, len(order) - 1, limit).round()]
    return order
