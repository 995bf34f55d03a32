"""Co-segmentation data: file reading, folder layouts, group splits, decoded-image cache, dataset, augmentation,
synthetic data."""
from coseg.data.augment import TrainAugmentation
from coseg.data.cache import Decoded, ImageCache, decode_sample, resize_image, resize_mask
from coseg.data.dataset import CosegDataset
from coseg.data.group_paste import GroupPaste
from coseg.data.io import (
    IMAGE_SUFFIXES, MASK_SUFFIXES, DataFileError, ImageReadError, MaskError, encode_png, printable, read_image,
    read_image_for_size, read_mask, read_pair, shown_names, write_png_atomic,
)
from coseg.data.layouts import (
    LAYOUTS, NOTE_KINDS, SBCOSEG_SUBSETS, LayoutError, Problem, Sample, Scan, detect_layout, find_samples,
)
from coseg.data.splits import (
    draw_units, groups_sharing_images, holdout_groups, load_split, resolve_groups, resolve_split, sharing_pairs,
    stratified_holdout, train_test_split,
)
from coseg.data.synthetic import SYNTHETIC_LAYOUTS, make_synthetic_coseg, synthetic_image

__all__ = [
    "IMAGE_SUFFIXES", "LAYOUTS", "MASK_SUFFIXES", "NOTE_KINDS", "SBCOSEG_SUBSETS", "SYNTHETIC_LAYOUTS", "CosegDataset",
    "DataFileError", "Decoded", "GroupPaste", "ImageCache", "ImageReadError", "LayoutError", "MaskError", "Problem",
    "Sample", "Scan", "TrainAugmentation", "decode_sample", "detect_layout", "draw_units", "encode_png", "find_samples",
    "groups_sharing_images", "holdout_groups", "load_split", "make_synthetic_coseg", "printable", "read_image",
    "read_image_for_size", "read_mask", "read_pair", "resize_image", "resize_mask", "resolve_groups", "resolve_split",
    "sharing_pairs", "shown_names", "stratified_holdout", "synthetic_image", "train_test_split", "write_png_atomic",
]
