"""Finding (image, mask, group) samples in the folder layouts of co-segmentation data sets.

Layouts (``LAYOUTS`` registry; each entry is ``scan(root, masks_root) -> (samples, problems)``):

- ``icoseg``:   ``images/<group>/*.jpg`` + ``ground_truth/<group>/<stem>.png`` (``masks_root`` replaces
  ``ground_truth``). Other folders of ``root`` holding images and images directly in it are reported and left out,
  as in ``folders``.
- ``internet``: ``Data/<Class>/*.jpg`` + ``Data/<Class>/GroundTruth/<stem>.png``, any non-zero = foreground;
  noise images keep their empty masks. ``root`` may be the folder holding ``Data``, ``Data`` itself or one class
  folder (``Data/Airplane100``: one group named after it). Subfolders of a class other than ``GroundTruth`` and
  folders holding images beside ``Data`` are reported and left out; when some class has a ``GroundTruth`` folder,
  the images of a class without one are reported as without mask.
- ``sbcoseg``:  ``[<subset>/]<group>/{<stem>.jpg, <stem>.png}``: image and mask side by side, matched by stem; a
  top folder named after a subset (ECFB, TR, MH, SD, Normal) holds group folders and sets ``Sample.subset``;
  other top folders are groups themselves. Groups are named by their path under ``root``: ``ECFB/<group>``; images
  directly in a subset folder are reported as outside any group. ``root`` may be one subset folder (``SBCoseg/ECFB``:
  its groups keep their names and subset, ``ECFB/<group>``, so that they match those of a model trained on the whole
  data set) or one group folder itself (images and masks side by side in it: one group named after it, likewise
  ``ECFB/<group>`` with its subset when it is in a subset's folder). Subfolders
  of a group holding images are reported and left out.
- ``folders``:  images under ``root`` (or ``root/images``), masks under ``masks_root`` (or a folder beside
  ``root/images`` named in ``MASK_FOLDER_NAMES``: ``masks``, ``gt``, ...; without ``root/images``, such a folder in
  ``root`` whose masks pair with images of ``root``: ``photos/a.jpg`` + ``photos/masks/a.png``), matched by relative
  folder + stem; these folder names in any case (``Images/`` + ``Masks/``). Without such a folder, each group
  folder's own one is its masks likewise (MSRC's ``cow/GT/a.png`` for ``cow/a.bmp``; the images of groups without
  one are then reported as without mask). Such a folder of masks none of which is named after an image
  (``photos/masks/mask_a.png``) is reported and left out, not read as a group of photos.
  A group is the folder path under the images root (``a/b``); images directly in it form one group named after
  it, unless a subfolder of that name holds images too (``images/a.jpg`` beside ``images/images/``): the loose
  images are then reported as outside any group and left out. Without masks every sample has ``mask=None``
  (prediction). When ``root/images`` exists it alone holds the images: the other folders of ``root`` holding
  images (except the mask folder in use) and the images directly in ``root`` are reported and left out; other
  files there (``splits.json``, a README) are ignored.
- ``auto``: picks one of the above from the folders present (``detect_layout``); ``sbcoseg`` needs a subset folder
  holding a group folder of such pairs (a group of photos named ``normal`` is no subset folder) or at least half the
  PNGs beside a JPEG of their stem (or named after one plus a suffix: ``a.jpg``, ``a_mask.png``), and those PNGs
  masks (two-level images), not photos, so a folder of JPEG and PNG photos where some share a stem stays
  ``folders`` (and gives no "did you mean" hint).

Hidden files and folders (``.DS_Store``, AppleDouble ``._a.jpg``), ``__MACOSX``, a Synology NAS's thumbnail folders
(``@eaDir``) and files that are not images (``Thumbs.db``, a README) are ignored; image files of a format not read
there (HEIC, camera raw, ...; a JPEG among masks) are reported as unsupported files. Symlinked folders are followed
once (a folder reached again, e.g. through a loop, is reported and skipped); a link that cannot be followed (dangling
or to itself) is reported as a broken link, a folder that cannot be listed as a skipped folder. An image without a
mask (when a mask folder exists) is kept with ``mask=None`` and reported; a mask without an image is reported (each
naming an unpaired file of the other kind whose name differs only in case, or whose stem is in another folder, or
whose stem differs by a suffix). A mask named after its image plus a separator (``_``, ``-``, ``.``, space) and a
suffix (``a.jpg`` and ``a_GT.png``, ``a-mask.png``, ``a.jpg.png``) is paired with it when it is unambiguous: the image
has no mask of its own stem, one suffix names the masks of the whole scan (the one of each image named by a single
mask in its place, and every image named so has a mask with it); a "paired by suffix" note (of ``NOTE_KINDS``) at
``root`` tells it. With several suffixes (``a_GT.png``, ``b_mask.png``), or one without a letter (``a_2.png``), none
pairs. Where masks exist, several images with one stem in one folder (``a.jpg``, ``a.png``: which one is ``a.png`` the
mask of?) and several masks with one stem are reported as ambiguous and left out (in ``sbcoseg``, where the PNG is the
mask, that is ``a.jpg`` + ``a.jpeg``). Group names are kept exactly as the OS gives them (non-UTF-8 bytes as surrogate
escapes); ``printable`` shows them. Images and masks pair by folder and stem compared in Unicode's composed form
(NFC), so a name written by macOS (decomposed) pairs with the same name written elsewhere.

A new layout is a function ``scan(root: Path, masks_root: Path | None) -> (list[Sample], list[Problem])``
registered with ``@LAYOUTS.register("name")``; ``find_samples`` sorts its output and rejects an empty result.
"""
from __future__ import annotations

import os
import unicodedata
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from metric.registry import Registry

from coseg.atomic import PathLike
from coseg.data.io import (IMAGE_SUFFIXES, MASK_SUFFIXES, UNSUPPORTED_SUFFIXES, DataFileError, MaskError, printable,
                          read_mask)

SBCOSEG_SUBSETS = ("ECFB", "TR", "MH", "SD", "Normal")
NOTE_KINDS = frozenset({"paired by suffix"})
"""The ``Problem`` kinds that tell how files were read and leave nothing out."""
MASK_FOLDER_NAMES = ("masks", "mask", "ground_truth", "groundtruth", "gt", "labels", "annotations")  # any case
_IGNORED_FOLDERS = frozenset({"__MACOSX", "@eaDir"})  # macOS zip extras; a Synology NAS's thumbnails
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
_IMAGE_LIKE = IMAGE_SUFFIXES | MASK_SUFFIXES | UNSUPPORTED_SUFFIXES  # reported where they are not read


@dataclass(frozen=True)
class Sample:
    """One image of a group; ``mask`` is None when it has no ground truth."""

    image: Path
    mask: Optional[Path]
    group: str
    subset: Optional[str] = None
    any_nonzero: bool = False  # mask encoding: any non-zero value is foreground (Internet data set)


@dataclass(frozen=True)
class Problem:
    """A file or folder that did not make a complete sample. ``kind``: "image without mask", "mask without
    image", "ambiguous image", "ambiguous mask", "outside any group", "skipped folder", "broken link",
    "unsupported file" or "data set in a subfolder"; or, of the ``NOTE_KINDS``, which leave nothing out, a note on
    how the files were read. ``candidates``: for an "image without mask", the unpaired masks of its folder named
    after it plus a suffix (``a_GT.png`` for ``a.jpg``), which ``find_samples`` may pair with it."""

    kind: str
    path: Path
    detail: str = ""
    candidates: tuple[Path, ...] = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.kind}: {printable(self.path)}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Scan:
    """What ``find_samples`` found: samples sorted by (group, image path) and the problems met."""

    layout: str
    root: Path
    samples: list[Sample]
    problems: list[Problem]

    @property
    def labelled(self) -> list[Sample]:
        """The samples that have a mask."""
        return [s for s in self.samples if s.mask is not None]

    @property
    def groups(self) -> list[str]:
        return sorted({s.group for s in self.samples})

    def group_subsets(self) -> dict[str, Optional[str]]:
        """Group → subset (None outside SBCoseg), for ``stratified_holdout``."""
        return {s.group: s.subset for s in self.samples}


class LayoutError(ValueError):
    """The folder does not hold a usable data set in the requested layout."""


class MasksRootError(LayoutError):
    """A separate mask folder given to a layout that keeps its masks beside the images: the data folder is not at
    fault."""


ScanFn = Callable[[Path, Optional[Path]], tuple[list[Sample], list[Problem]]]
LAYOUTS: Registry = Registry("layout")


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in _IGNORED_FOLDERS


def _walk(top: Path, suffixes: frozenset[str], problems: list[Problem], recursive: bool = True,
          exclude: Iterable[Path] = ()) -> list[Path]:
    """Visible files under ``top`` whose suffix is in ``suffixes`` (any case), sorted; other image files are
    reported as unsupported.

    Symlinked folders are followed after the real ones, and each real folder is visited once, so loops end and
    a folder linked from elsewhere keeps its own path. Folders in ``exclude`` are skipped silently."""
    excluded = {os.path.realpath(p) for p in exclude}
    seen: set[str] = set()
    found: list[Path] = []
    pending, linked = deque([top]), deque()
    while pending or linked:
        folder = pending.popleft() if pending else linked.popleft()
        real = os.path.realpath(folder)
        if real in excluded:
            continue
        if real in seen:
            problems.append(Problem("skipped folder", folder, "already visited through another path or a loop"))
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problems.append(Problem("skipped folder", folder, e.strerror or str(e)))
            continue
        for entry in entries:
            if not _visible(entry.name):
                continue
            path = Path(entry.path)
            is_dir, is_file = _follow(entry)
            if is_dir:
                if recursive:
                    (linked if entry.is_symlink() else pending).append(path)
            elif is_file:
                suffix = path.suffix.lower()
                if suffix in suffixes:
                    found.append(path)
                elif suffix in _IMAGE_LIKE:
                    problems.append(Problem("unsupported file", path, f"'{suffix}' files are not read here; use "
                                                                      f"{', '.join(sorted(suffixes))}"))
            elif entry.is_symlink():
                problems.append(Problem("broken link", path))
    return sorted(found)


def _follow(entry: os.DirEntry) -> tuple[bool, bool]:
    """(is a folder, is a file), following links; (False, False) for a link that cannot be followed (a loop)."""
    try:
        return entry.is_dir(), entry.is_file()
    except OSError:
        return False, False


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (following links); False where it cannot be looked at: inside a folder that
    cannot be searched (``chmod 000``, ``lost+found``), or a link loop."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _listing(folder: Path) -> list[os.DirEntry]:
    """The visible entries of ``folder`` sorted by name; none when it cannot be listed (``_walk`` reports that)."""
    try:
        return sorted((e for e in os.scandir(folder) if _visible(e.name)), key=lambda e: e.name)
    except OSError:
        return []


def _subfolders(folder: Path) -> list[Path]:
    return [Path(e.path) for e in _listing(folder) if _follow(e)[0]]


def _key(folder: str, stem: str) -> tuple[str, str]:
    """(folder, stem) in Unicode's composed form (NFC): a name written by macOS (decomposed, ``e`` + accent) pairs
    with the same name written elsewhere; the two look alike in every listing."""
    return unicodedata.normalize("NFC", folder), unicodedata.normalize("NFC", stem)


def _stem_key(path: Path, base: Path) -> tuple[str, str]:
    """(folder relative to ``base``, stem), composed (:func:`_key`): what pairs an image with its mask."""
    return _key(path.parent.relative_to(base).as_posix(), path.stem)


def _index_by_stem(files: list[Path], base: Path, what: str, problems: list[Problem]) -> dict[tuple[str, str], Path]:
    """``files`` keyed by ``_stem_key``; several files for one key are reported as "ambiguous <what>" and dropped."""
    index: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        index.setdefault(_stem_key(path, base), []).append(path)
    unique = {}
    for key, paths in index.items():
        if len(paths) > 1:
            detail = f"{len(paths)} {what}s share the stem '{key[1]}'"
            problems.extend(Problem(f"ambiguous {what}", p, detail) for p in paths)
        else:
            unique[key] = paths[0]
    return unique


def _pair(images: list[Path], image_base: Path, masks: Optional[dict[tuple[str, str], Path]],
          group_of: Callable[[Path], str], problems: list[Problem], subset: Optional[str] = None,
          any_nonzero: bool = False) -> list[Sample]:
    """Samples for ``images`` matched to ``masks`` by (relative folder, stem); leftovers on both sides reported.

    ``masks=None`` means there is no mask folder at all: samples get ``mask=None`` without a report. Otherwise
    images sharing a stem in one folder (``a.jpg``, ``a.png``) could each be given the other's mask: they are
    reported as ambiguous and left out."""
    if masks is None:
        return [Sample(image, None, group_of(image), subset, any_nonzero) for image in images]
    unique = _index_by_stem(images, image_base, "image", problems)
    keys = {_stem_key(image, image_base) for image in images}
    lone_images = {key: image for key, image in unique.items() if key not in masks}
    lone_masks = {key: mask for key, mask in sorted(masks.items()) if key not in keys}
    image_stems, mask_stems = _by_stem(lone_images), _by_stem(lone_masks)
    mask_prefixes = _by_stem(lone_masks, prefixes=True)
    problems.extend(Problem("image without mask", image,
                            _elsewhere(key, mask_stems, "mask") or _suffixed_mask(key, mask_prefixes),
                            _named_after(key, mask_prefixes))
                    for key, image in lone_images.items())
    problems.extend(Problem("mask without image", mask,
                            _elsewhere(key, image_stems, "image") or _unsuffixed_image(key, image_stems))
                    for key, mask in lone_masks.items())
    return [Sample(image, masks.get(key), group_of(image), subset, any_nonzero) for key, image in unique.items()]


_SUFFIX_SEPARATORS = "_- ."


def _prefixes(stem: str) -> list[str]:
    """Each start of ``stem`` before a separator, longest last: ``a``, ``a_2`` of ``a_2_GT``."""
    return [stem[:i] for i in range(1, len(stem)) if stem[i] in _SUFFIX_SEPARATORS]


def _by_stem(unpaired: dict[tuple[str, str], Path],
             prefixes: bool = False) -> dict[str, list[tuple[str, str, Path]]]:
    """``unpaired`` files (``_stem_key`` → file) as stem ignoring case (with ``prefixes``: as each start of their stem
    before a separator, ``a`` of ``a_GT``) → [(relative folder, stem, file)], sorted."""
    stems: dict[str, list[tuple[str, str, Path]]] = {}
    for (folder, stem), path in sorted(unpaired.items()):
        keys = _prefixes(stem) if prefixes else [stem]
        for key in keys:
            stems.setdefault(key.casefold(), []).append((folder, stem, path))
    return stems


def _elsewhere(key: tuple[str, str], stems: dict[str, list[tuple[str, str, Path]]], what: str) -> str:
    """For a file left unpaired at ``key`` (relative folder, stem): a detail naming an unpaired ``what`` (image,
    mask) of ``stems`` (``_by_stem``) whose folder and stem differ from it only in case (``b.jpg``, ``B.png``), or
    else has its stem in another relative folder (the masks of grouped images kept in one flat folder); else ""."""
    found = stems.get(key[1].casefold(), [])
    other = next((path for folder, _, path in found if folder.casefold() == key[0].casefold()), None)
    if other is not None:
        return (f"the {what} {printable(other)}, also unpaired, has its folder and stem but for case; an image and "
                "its mask pair by folder and stem, case included: rename one")
    other = next((path for folder, stem, path in found if stem == key[1] and folder != key[0]), None)
    return "" if other is None else (f"the {what} {printable(other)}, also unpaired, has its stem in another folder; "
                                     "an image and its mask pair by stem within the same folder under the images' "
                                     "and the masks' folders")


_RENAME = "a mask pairs with the image of its exact stem in the same folder: rename the masks without the suffix"


def _suffixed_mask(key: tuple[str, str], prefixes: dict[str, list[tuple[str, str, Path]]]) -> str:
    """For an image left unpaired at ``key``: a detail naming an unpaired mask of its folder named after the image
    with a suffix added (``a.jpg``, ``a_GT.png``; ``prefixes``: :func:`_by_stem` of the masks, with ``prefixes``),
    else ""."""
    found = [(stem, path) for folder, stem, path in prefixes.get(key[1].casefold(), []) if folder == key[0]]
    if not found:
        return ""
    stem, path = min(found, key=lambda f: len(f[0]))
    suffix = printable(stem[len(key[1]):])
    return f"the mask {printable(path)}, also unpaired, has its stem followed by '{suffix}'; {_RENAME}"


def _named_after(key: tuple[str, str], prefixes: dict[str, list[tuple[str, str, Path]]]) -> tuple[Path, ...]:
    """For an image left unpaired at ``key``: the unpaired masks of its folder whose stem is its stem (case included),
    a separator and more (``prefixes``: as for :func:`_suffixed_mask`)."""
    return tuple(path for folder, other, path in prefixes.get(key[1].casefold(), [])
                 if folder == key[0] and key[1] in _prefixes(other))


def _unsuffixed_image(key: tuple[str, str], stems: dict[str, list[tuple[str, str, Path]]]) -> str:
    """For a mask left unpaired at ``key``: a detail naming an unpaired image of its folder whose stem is the mask's
    but for a suffix (``a_GT.png``, ``a.jpg``; ``stems``: :func:`_by_stem` of the images), else ""."""
    for prefix in reversed(_prefixes(key[1])):
        path = next((p for folder, _, p in stems.get(prefix.casefold(), []) if folder == key[0]), None)
        if path is not None:
            return (f"the image {printable(path)}, also unpaired, has its stem without the suffix "
                    f"'{printable(key[1][len(prefix):])}'; {_RENAME}")
    return ""


def _folder_groups(images_root: Path) -> Callable[[Path], str]:
    flat_name = Path(os.path.abspath(images_root)).name

    def group_of(image: Path) -> str:
        relative = image.parent.relative_to(images_root).as_posix()
        return flat_name if relative == "." else relative

    return group_of


def _without_clashing_loose_images(images_root: Path, samples: list[Sample], problems: list[Problem]
                                   ) -> tuple[list[Sample], list[Problem]]:
    """``samples`` and ``problems`` with the images directly in ``images_root`` reported as outside any group and
    left out when a subfolder's group has their group's name (``images/images/``): both would be one group."""
    loose = {s.image for s in samples if s.image.parent == images_root}
    names = {s.group for s in samples if s.image in loose}
    clash = next((s.image.parent for s in samples if s.group in names and s.image not in loose), None)
    if clash is None:
        return samples, problems
    detail = (f"its group would be '{printable(clash.name)}', the group of the folder {printable(clash)}, so both "
              "would be scored as one; to use it, move it into a subfolder of its own")
    problems = [p for p in problems if p.path not in loose] + [Problem("outside any group", p, detail)
                                                                for p in sorted(loose)]
    return [s for s in samples if s.image not in loose], problems


def _scan_folder_pair(images_root: Path, masks_root: Optional[Path], skip: Optional[Path] = None,
                      group_masks: bool = False) -> tuple[list[Sample], list[Problem]]:
    """Samples of the images under ``images_root`` (but ``skip``) paired with the masks under ``masks_root``; without
    ``masks_root`` and with ``group_masks``, with those of the groups' own mask folders (``_group_mask_folders``)."""
    problems: list[Problem] = []
    if not images_root.is_dir():
        raise LayoutError(f"image folder not found: {printable(images_root)}")
    exclude = [p for p in (masks_root, skip) if p is not None]
    images = _walk(images_root, IMAGE_SUFFIXES, problems, exclude=exclude)
    masks = None
    if masks_root is not None:
        masks = _index_by_stem(_walk(masks_root, MASK_SUFFIXES, problems), masks_root, "mask", problems)
    elif group_masks:
        found, mask_folders = _group_mask_folders(images_root, images, problems)
        images = [image for image in images if not mask_folders.intersection(image.parents)]
        masks = found or None
    return _pair(images, images_root, masks, _folder_groups(images_root), problems), problems


def _group_mask_folders(images_root: Path, images: list[Path], problems: list[Problem]
                        ) -> tuple[dict[tuple[str, str], Path], set[Path]]:
    """The masks of group folders that hold their own mask folder (``cow/GT/a.png`` for ``cow/a.jpg``: MSRC class
    folders), for ``images`` under ``images_root`` without a mask folder of their own: ``(masks keyed by _stem_key
    relative to images_root, the folders of masks to leave out of the images)``. Each subfolder named in
    ``MASK_FOLDER_NAMES`` is taken as ``_inner_mask_folder`` takes one in a flat folder: as its folder's masks when
    one pairs, left out and reported when it holds masks none of which pairs, else kept as a group of images."""
    names = {name.lower() for name in MASK_FOLDER_NAMES}
    groups = sorted({image.parent.parent for image in images
                     if image.parent != images_root and image.parent.name.lower() in names})
    masks: dict[tuple[str, str], Path] = {}
    mask_folders: set[Path] = set()
    for group in groups:
        folder, unpaired = _inner_mask_folder(group)
        if unpaired is not None:
            problems.append(unpaired)
            mask_folders.add(unpaired.path)
        if folder is None:
            continue
        mask_folders.add(folder)
        base = group.relative_to(images_root)
        found = _index_by_stem(_walk(folder, MASK_SUFFIXES, problems), folder, "mask", problems)
        masks.update((_key((base / relative).as_posix(), stem), mask) for (relative, stem), mask in found.items())
    return masks, mask_folders


def _named_subfolder(folder: Path, names: Sequence[str]) -> Optional[Path]:
    """The subfolder of ``folder`` named like the first of ``names`` that one is named like, ignoring case
    (``Images``, ``GT``); an exact match first."""
    found = {e.name.lower(): Path(e.path) for e in reversed(_listing(folder)) if _follow(e)[0]}
    for name in names:
        if _is_folder(folder / name):
            return folder / name
        if name.lower() in found:
            return found[name.lower()]
    return None


_MASKS_HINT = "if they are their masks"


def unread_mask_folder(problem: Problem) -> bool:
    """Whether ``problem`` is a folder left out whose files are named as the images, a mask folder the layout does not
    look for: what explains a scan without masks best."""
    return problem.kind == "skipped folder" and _MASKS_HINT in problem.detail


def _outside_images(root: Path, images_root: Path, masks_root: Optional[Path], under: str = "images/"
                    ) -> list[Problem]:
    """The image files directly in ``root`` and the other visible folders of ``root`` holding images (at any
    depth), except ``images_root`` and the mask folder in use: the layout leaves them out (``under`` names the
    folder to move them into). Without a mask folder, one whose masks are named as the images (``segmentations/``,
    a name the layouts do not look for) is told as their likely masks."""
    used = [images_root] + ([masks_root] if masks_root is not None else [])
    skip = {os.path.realpath(p) for p in used}
    outside = f"outside {printable(images_root)}, which holds this layout's images"
    no_masks = under == "images/" and (masks_root is None or not _is_folder(masks_root))
    images: set[tuple[str, str]] = set()  # the images' keys, once a folder beside them may hold their masks
    problems = []
    for entry in _listing(root):
        path = Path(entry.path)
        if os.path.realpath(path) in skip:
            continue
        is_dir, is_file = _follow(entry)
        if is_dir:
            count = len(_walk(path, IMAGE_SUFFIXES, [], exclude=used))
            if count and no_masks and not images:
                images = {_stem_key(p, images_root) for p in _walk(images_root, IMAGE_SUFFIXES, [])}
            masks = sum(_stem_key(p, path) in images for p in _walk(path, MASK_SUFFIXES, [])) if count and images else 0
            if masks:
                problems.append(Problem("skipped folder", path, f"{masks} file(s) named as images of "
                                        f"{printable(images_root)} (by relative folder and stem), in a folder no mask "
                                        f"is read from: {_MASKS_HINT}, rename it masks/ (train, evaluate and split "
                                        f"also take --masks {printable(path)})"))
            elif count:
                problems.append(Problem("skipped folder", path, f"{count} image(s) {outside}; to use them, pass "
                                                                f"this folder itself or move it under {under}"))
        elif is_file and path.suffix.lower() in IMAGE_SUFFIXES:
            problems.append(Problem("outside any group", path, f"{outside}; to use it, move it under {under}"))
    return problems


def _nested_folders(group: Path, name: str, skip: Iterable[Path] = ()) -> list[Problem]:
    """The subfolders of ``group`` (but ``skip``) holding images at any depth, reported as skipped: the layouts
    whose groups are single folders (internet, sbcoseg) leave them out."""
    skipped = {os.path.realpath(p) for p in skip}
    problems = []
    for folder in _subfolders(group):
        count = 0 if os.path.realpath(folder) in skipped else len(_walk(folder, IMAGE_SUFFIXES, []))
        if count:
            problems.append(Problem("skipped folder", folder, f"{count} image file(s) in a subfolder of the group "
                                    f"'{printable(name)}', which this layout does not read; to use them, move them "
                                    "into a group folder of their own"))
    return problems


MASKS_LOOKED_AT = 3
"""How many files of an unpaired folder named like a mask folder are read to tell masks from photos."""


def _inner_mask_folder(root: Path) -> tuple[Optional[Path], Optional[Problem]]:
    """The subfolder of ``root`` named in ``MASK_FOLDER_NAMES`` (``photos/masks/``), as ``(folder, None)`` when a
    mask in it pairs with an image of ``root`` outside it (``photos/a.jpg`` with ``photos/masks/a.png``) or is named
    after one plus a suffix (``photos/masks/a_mask.png``, MSRC's ``cow/GT/1_s_GT.bmp``): the masks of images held in
    ``root`` itself, not a group of images. As ``(None, skipped folder)`` when its files are masks (its first
    ``MASKS_LOOKED_AT`` are two-level images) none of which is named after an image (``photos/masks/mask_a.png``): it
    is left out instead of being taken for a group of photos. ``(None, None)`` otherwise (a folder of photos named
    ``labels`` stays a group)."""
    folder = _named_subfolder(root, MASK_FOLDER_NAMES)
    files = _walk(folder, MASK_SUFFIXES, []) if folder is not None else []
    if not files:
        return None, None
    masks = {_stem_key(p, folder) for p in files}
    images = {_stem_key(p, root) for p in _walk(root, IMAGE_SUFFIXES, [], exclude=[folder])}
    suffixed = {(relative, prefix) for relative, stem in masks for prefix in _prefixes(stem)}
    if not images.isdisjoint(masks) or not images.isdisjoint(suffixed):  # suffixed: find_samples may pair them
        return folder, None
    try:
        for path in files[:MASKS_LOOKED_AT]:
            read_mask(path)
    except DataFileError:
        return None, None
    return None, Problem("skipped folder", folder, f"{len(files)} mask(s), none named like an image of "
                         f"{printable(root)}; to use them, rename them: a mask pairs with the image of its name and "
                         f"folder (a.jpg with {printable(folder.name)}/a.png)")


@LAYOUTS.register("folders")
def scan_folders(root: Path, masks_root: Optional[Path]) -> tuple[list[Sample], list[Problem]]:
    """Generic layout: see the module docstring."""
    images_root = _named_subfolder(root, ["images"])
    if images_root is None:
        unpaired = None
        if masks_root is None:
            masks_root, unpaired = _inner_mask_folder(root)
        samples, problems = _without_clashing_loose_images(
            root, *_scan_folder_pair(root, masks_root, unpaired.path if unpaired is not None else None,
                                     group_masks=True))
        return samples, problems + ([unpaired] if unpaired is not None else [])
    if masks_root is None:
        masks_root = _named_subfolder(root, MASK_FOLDER_NAMES)
    samples, problems = _without_clashing_loose_images(images_root,
                                                       *_scan_folder_pair(images_root, masks_root, group_masks=True))
    return samples, problems + _outside_images(root, images_root, masks_root)


@LAYOUTS.register("icoseg")
def scan_icoseg(root: Path, masks_root: Optional[Path]) -> tuple[list[Sample], list[Problem]]:
    """``images/<group>/*`` + ``ground_truth/<group>/<stem>.png``."""
    masks_root = masks_root if masks_root is not None else root / "ground_truth"
    samples, problems = _scan_folder_pair(root / "images", masks_root if _is_folder(masks_root) else None)
    outside = {s.image for s in samples if s.image.parent == root / "images"}
    problems = [p for p in problems if p.path not in outside] + [Problem("outside any group", p) for p in outside]
    problems += _outside_images(root, root / "images", masks_root)
    return [s for s in samples if s.image not in outside], problems


def _no_masks_root(layout: str, masks_root: Optional[Path]) -> None:
    if masks_root is not None:
        raise MasksRootError(f"layout '{layout}' keeps masks beside the images: a separate mask folder (--masks, "
                             f"masks_root) does not apply")


def _groundtruth_folder(group: Path) -> Optional[Path]:
    return _named_subfolder(group, ["GroundTruth"])


def _internet_class(folder: Path) -> bool:
    """True for one Internet class folder itself (``Data/Airplane100``): images beside a GroundTruth folder, and no
    ``images`` folder (that is the folders layout with its masks in ``GroundTruth``)."""
    return (_groundtruth_folder(folder) is not None and not _is_folder(folder / "images")
            and bool(_walk(folder, IMAGE_SUFFIXES, [], recursive=False)))


@LAYOUTS.register("internet")
def scan_internet(root: Path, masks_root: Optional[Path]) -> tuple[list[Sample], list[Problem]]:
    """``Data/<Class>/*.jpg`` + ``Data/<Class>/GroundTruth/<stem>.png``, any non-zero = foreground."""
    _no_masks_root("internet", masks_root)
    data = root / "Data" if _is_folder(root / "Data") else root
    single = _internet_class(data)
    problems: list[Problem] = [] if data == root else _outside_images(root, data, None, under="Data/")
    if not single:
        problems.extend(Problem("outside any group", p)
                        for p in _walk(data, IMAGE_SUFFIXES, problems, recursive=False))
    truths = {group: _groundtruth_folder(group) for group in ([data] if single else _subfolders(data))}
    labelled = any(truth is not None for truth in truths.values())
    samples = []
    for group, truth in truths.items():
        images = _walk(group, IMAGE_SUFFIXES, problems, recursive=False)
        masks = None if truth is None else _index_by_stem(_walk(truth, MASK_SUFFIXES, problems, recursive=False),
                                                          truth, "mask", problems)
        if truth is None and labelled:  # other classes have ground truth: this one's images would go unscored
            problems.extend(Problem("image without mask", image, "its class folder has no GroundTruth folder, "
                                    "which other classes have") for image in images)
        name = Path(os.path.abspath(group)).name
        problems += _nested_folders(group, name, [] if truth is None else [truth])
        samples += _pair(images, group, masks, lambda _, name=name: name, problems, any_nonzero=True)
    return samples, problems


def _sbcoseg_subset(name: str) -> Optional[str]:
    return next((s for s in SBCOSEG_SUBSETS if s.lower() == name.lower()), None)


@LAYOUTS.register("sbcoseg")
def scan_sbcoseg(root: Path, masks_root: Optional[Path]) -> tuple[list[Sample], list[Problem]]:
    """``[<subset>/]<group>/{<stem>.jpg, <stem>.png}``: JPEG (or other non-PNG) images, PNG masks, same folder.
    A folder holding such pairs itself is one group, named after it."""
    _no_masks_root("sbcoseg", masks_root)
    problems: list[Problem] = []
    name = Path(os.path.abspath(root)).name
    if _pairs_side_by_side(root):  # one group folder; in a subset's folder, named as under the data set's root
        parent = Path(os.path.abspath(root)).parent.name
        subset = _sbcoseg_subset(parent)
        return _sbcoseg_group(root, f"{parent}/{name}" if subset else name, subset, problems), problems
    problems.extend(Problem("outside any group", p) for p in _walk(root, IMAGE_SUFFIXES, problems, recursive=False))
    own = _sbcoseg_subset(name)  # root is one subset's folder: its groups are named as under the data set's root
    samples = []
    for top in _subfolders(root):
        subset = None if own else _sbcoseg_subset(top.name)
        if subset:
            problems.extend(Problem("outside any group", p)
                            for p in _walk(top, IMAGE_SUFFIXES, problems, recursive=False))
        for group in _subfolders(top) if subset else [top]:
            label = f"{name}/{group.name}" if own else group.relative_to(root).as_posix()
            samples += _sbcoseg_group(group, label, own or subset, problems)
    return samples, problems


def _sbcoseg_group(group: Path, name: str, subset: Optional[str], problems: list[Problem]) -> list[Sample]:
    """The samples of one SBCoseg group folder: its non-PNG images, each with the PNG of its stem as mask."""
    files = _walk(group, IMAGE_SUFFIXES | MASK_SUFFIXES, problems, recursive=False)
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES - {".png"}]
    masks = _index_by_stem([f for f in files if f.suffix.lower() == ".png"], group, "mask", problems)
    problems += _nested_folders(group, name)
    return _pair(images, group, masks, lambda _: name, problems, subset=subset)


def _side_by_side(folder: Path) -> tuple[list[Path], int]:
    """(PNGs beside a JPEG of their stem or named after one plus a suffix (``a.jpg``, ``a_mask.png``; unless the first
    of these is no mask: photos ``a copy.png``), how many PNGs) directly in ``folder``."""
    stems: dict[str, set[str]] = {}
    pngs: dict[str, str] = {}  # stem → file name
    for entry in _listing(folder):
        if _follow(entry)[1]:
            stem, suffix = os.path.splitext(entry.name)
            stems.setdefault(stem, set()).add(suffix.lower())
            if suffix.lower() == ".png":
                pngs[stem] = entry.name
    jpegs = {stem for stem, suffixes in stems.items() if suffixes & _JPEG_SUFFIXES}
    suffixed = [name for stem, name in pngs.items() if stem not in jpegs and not jpegs.isdisjoint(_prefixes(stem))]
    try:
        if suffixed:
            read_mask(folder / suffixed[0])
    except DataFileError:
        suffixed = []
    paired = [pngs[stem] for stem in sorted(jpegs.intersection(pngs))] + suffixed
    return [folder / name for name in paired], len(pngs)


def _pairs_side_by_side(folder: Path) -> bool:
    """True if ``folder`` holds a JPEG and a PNG with its stem (or with its stem plus a suffix)."""
    return bool(_side_by_side(folder)[0])


def _mostly_masks(pngs: Sequence[Path]) -> bool:
    """Whether the PNGs ``pngs`` beside a JPEG of their stem are masks, not the PNG photos of a user's folder whose
    names clash with JPEG ones (``a.jpg``, ``a.png``): of the first ``MASKS_LOOKED_AT``, no more are photos (read but
    not two-level) than masks (a file that cannot be read tells neither)."""
    masks = photos = 0
    for path in pngs[:MASKS_LOOKED_AT]:
        try:
            read_mask(path)
            masks += 1
        except MaskError:
            photos += 1
        except DataFileError:
            pass
    return photos <= masks


def _subset_folder(folder: Path) -> bool:
    """Whether ``folder`` is an SBCoseg subset's: named after one (any case) and holding a group folder of images
    and masks side by side, not a user's group of photos named ``normal`` or ``TR``."""
    return _sbcoseg_subset(folder.name) is not None and any(
        paired and _mostly_masks(paired) for paired, _ in map(_side_by_side, _subfolders(folder)))


def detect_layout(root: PathLike) -> str:
    """The layout name ``root`` looks like: checks, in order, internet, icoseg, sbcoseg (a subset folder holding a
    group of pairs, or at least half the PNGs directly in ``root`` and its folders beside a JPEG of their stem, or of
    their stem but for a suffix; the PNGs paired masks, not photos: :func:`_mostly_masks`), else folders."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder not found: {printable(root)}")
    if _is_folder(root / "Data") or _internet_class(root):
        return "internet"
    tops = _subfolders(root)
    if any(_groundtruth_folder(top) is not None for top in tops):
        return "internet"
    if _is_folder(root / "images") and _is_folder(root / "ground_truth"):
        return "icoseg"
    if any(_subset_folder(t) for t in tops):
        return "sbcoseg"
    found = [_side_by_side(t) for t in [root, *tops]]
    paired, pngs = [png for pairs, _ in found for png in pairs], sum(count for _, count in found)
    if paired and 2 * len(paired) >= pngs and _mostly_masks(paired):  # not PNG photos among JPEG ones
        return "sbcoseg"
    return "folders"


def find_samples(root: PathLike, layout: str = "auto", masks_root: Optional[PathLike] = None) -> Scan:
    """Scan ``root`` in ``layout`` (a ``LAYOUTS`` name or ``"auto"``).

    Raises ``LayoutError`` when the folder (or ``masks_root``) is missing or holds no image, ``KeyError`` for an
    unknown layout."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder not found: {printable(root)}")
    if masks_root is not None and not _is_folder(Path(masks_root)):  # else read without masks, without a word
        raise LayoutError(f"mask folder not found: {printable(Path(masks_root))}")
    name = detect_layout(root) if layout == "auto" else layout
    scan: ScanFn = LAYOUTS.get(name)
    try:
        samples, problems = scan(root, None if masks_root is None else Path(masks_root))
    except MasksRootError:
        raise
    except LayoutError as e:
        raise LayoutError(f"{e}{_nested_hint(root, '; ')}") from None
    if not samples:
        raise LayoutError(f"no images found under {printable(root)} in layout '{name}'"
                          + (f" ({len(problems)} problem(s), first: {problems[0]})" if problems else "")
                          + _nested_hint(root, "; "))
    if layout == "auto" and name == "folders" and (nested := data_set_in_subfolder(root)) is not None:
        problems.append(nested)
    samples, problems = _pair_suffixed(root, samples, problems)
    samples.sort(key=lambda s: (s.group, s.image))
    problems.sort(key=lambda p: (p.path, p.kind))
    return Scan(name, root, samples, problems)


def data_set_in_subfolder(root: Path) -> Optional[Problem]:
    """The "data set in a subfolder" problem of ``root`` read in the folders layout (no ``root/images``) when it is
    given one folder too high (``X/`` holding only ``X/SBCoseg/``: :func:`_nested_data_set`), its detail saying
    "did you mean X/SBCoseg?"; else None."""
    nested = None if _named_subfolder(root, ["images"]) is not None else _nested_data_set(root)
    if nested is None:
        return None
    return Problem("data set in a subfolder", nested[0], f"{printable(root)}, which holds no image itself, was read "
                   "in the folders layout, each folder a group" + _nested_hint(root, ": ", nested))


def _nested_data_set(root: Path) -> Optional[tuple[Path, str]]:
    """(subfolder, layout) for ``root`` given one folder too high (``X/`` holding ``X/SBCoseg/``): when ``root``
    holds no image itself and exactly one of its subfolders looks like a data set in another layout than
    ``folders`` (``detect_layout``: two folder levels looked at, no deeper walk); else None."""
    if any(_follow(e)[1] and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES for e in _listing(root)):
        return None
    found = [(folder, layout) for folder in _subfolders(root) if (layout := detect_layout(folder)) != "folders"]
    return found[0] if len(found) == 1 else None


def _nested_hint(root: Path, lead: str, nested: Optional[tuple[Path, str]] = None) -> str:
    """``lead`` + "did you mean <subfolder>?" for ``root`` given one folder too high (``_nested_data_set``), else
    "" (``nested``: that subfolder and its layout when already found)."""
    nested = nested or _nested_data_set(root)
    if nested is None:
        return ""
    return f"{lead}did you mean {printable(nested[0])}? (it holds a data set in the {nested[1]} layout)"


def _pair_suffixed(root: Path, samples: list[Sample], problems: list[Problem]) -> tuple[list[Sample], list[Problem]]:
    """``samples`` and ``problems`` with the images left without mask paired with the mask of their folder named
    after them plus a suffix (``a.jpg``, ``a_GT.png``: ``Problem.candidates``) when the scan has one such suffix: the
    one of each image named by a single mask, the same for all, and every image named so has a mask with it. Told by
    one "paired by suffix" note at ``root``; otherwise (several suffixes, or one without a letter: ``a_2.png`` is the
    mask of an image ``a_2`` more likely than of ``a``) both stay unpaired and reported."""
    named = {p.path: p.candidates for p in problems if p.kind == "image without mask" and p.candidates}
    suffixes = {masks[0].stem[len(image.stem):] for image, masks in named.items() if len(masks) == 1}
    if len(suffixes) != 1:
        return samples, problems
    suffix, = suffixes
    if not any(c.isalpha() for c in suffix):
        return samples, problems
    pairs = {image: mask for image, masks in named.items() for mask in masks if mask.stem == image.stem + suffix}
    if len(pairs) < len(named):  # an image named by masks of other suffixes only: no single naming scheme
        return samples, problems
    paired = set(pairs.values())
    problems = [p for p in problems if not (p.kind == "image without mask" and p.path in pairs
                                            or p.kind == "mask without image" and p.path in paired)]
    image, mask = min(pairs.items())
    problems.append(Problem("paired by suffix", root, f"{len(pairs)} mask(s) named after their image plus the suffix "
                            f"'{printable(suffix)}' (as {printable(mask.name)} for {printable(image.name)}) were "
                            "paired with it"))
    return [replace(s, mask=pairs[s.image]) if s.mask is None and s.image in pairs else s for s in samples], problems
