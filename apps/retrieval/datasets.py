"""Finding the labelled images of a retrieval data set's split, in the official layouts and in class folders.

Layouts (``RETRIEVAL_LAYOUTS`` registry; each entry is ``scan(root, split, train_classes) -> (entries, problems)``):

- ``cub``:     CUB-200-2011: ``images.txt`` (id, path under ``images/``), ``image_class_labels.txt`` (id, class),
  ``classes.txt`` (class, name). Classes 1–100 are ``train``, 101–200 ``test`` (the official
  ``train_test_split.txt`` is a classification split and is not used). Copies without ``image_class_labels.txt``
  are read too, keeping the split: an image's class is then its numbered class folder's
  (``images/001.Black_footed_Albatross``: class 1, as the official file gives it; an image outside such a folder is
  reported), named by ``classes.txt`` or, without it, by the folder.
- ``cars``:    Cars196: ``cars_annos.mat`` (struct array ``annotations`` with ``relative_im_path`` and ``class``;
  cell array ``class_names``), read with scipy. Classes 1–98 are ``train``, 99–196 ``test`` (the ``test`` flag of
  each annotation is a classification split and is not used). Without ``car_ims/``, the devkit distribution is read
  instead: ``cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (``annotations`` with ``fname`` and
  ``class``; images in ``cars_train/`` and ``cars_test/``), ``cars_meta.mat`` (``class_names``), each in ``root`` or
  ``root/devkit``; both parts are pooled and split by the same class ranges.
- ``sop``:     Stanford Online Products: ``Ebay_train.txt`` / ``Ebay_test.txt`` (columns image_id, class_id,
  super_class_id, path); super-classes are kept (``Record.super_label``): the hierarchical sampler draws each
  anchor class's neighbours from its super-class with ``class_tree: super_classes``.
- ``folders``: ``<root>/<class>/*.jpg`` or ``<root>/images/<class>/*.jpg`` (found by coseg's ``folders`` layout;
  nested folders: the class is the relative path ``a/b``; images outside a class folder are reported). The split
  comes from ``train_classes`` (``train`` = those, ``test`` = the others) or from ``<root>/splits.json``
  (``{"train": [...], "test": [...]}``, any split name it holds; class names are matched tolerantly).
- ``auto``:    picks one of the above from the files present (``detect_retrieval_layout``).

Every layout also has the split ``all``. ``root`` may be the official top folder or the folder holding it
(``CUB_200_2011``, ``Stanford_Online_Products``; Cars196: torchvision's ``stanford_cars``). Labels are remapped to
0..C−1 per split, in the order of the official class ids (folders: of the sorted class names); a name that
``classes.txt`` or ``class_names`` gives several class ids is followed by the id (``Bird (class 2)``), as classes
are told apart by name. Text index files are UTF-8, with or without a byte order mark, or UTF-16 with one
(Notepad's "Unicode"), with Unix or Windows line endings. Index lines that cannot be parsed, images listed but
missing or listed twice (kept once), images without a class and classes outside the official ranges are reported as
``Problem`` entries, never dropped silently.

A new layout is a function ``scan(root: Path, split: str, train_classes: Sequence[str] | None) ->
(list[Entry], list[Problem])`` registered with ``@RETRIEVAL_LAYOUTS.register("name")``.
"""
from __future__ import annotations

import codecs
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Optional, Sequence

import numpy as np

from coseg.atomic import PathLike
from coseg.data.io import IMAGE_SUFFIXES, printable, shown_names
from coseg.data.layouts import LayoutError, Problem, find_samples
from coseg.data.splits import resolve_groups, resolve_split
from metric.registry import Registry

OFFICIAL_SPLITS = ("train", "test", "all")
SPLITS_FILE = "splits.json"
CUB_RANGES = (range(1, 101), range(101, 201))
CUB_CLASS_FOLDER = re.compile(r"(\d{3})\.(.+)")  # 001.Black_footed_Albatross: class 1
CUB_FILES = ("image_class_labels.txt", "classes.txt", "train_test_split.txt")  # one beside images.txt tells CUB
CARS_RANGES = (range(1, 99), range(99, 197))
CARS_DEVKIT = {"cars_train": "cars_train_annos.mat", "cars_test": "cars_test_annos_withlabels.mat"}
CARS_FOLDER = "stanford_cars"


class Record(NamedTuple):
    """One image of a split: its file, its class label in 0..C−1 and its super-class label (SOP) or None."""

    path: Path
    label: int
    super_label: Optional[int]


@dataclass(frozen=True)
class Entry:
    """What a layout finds for one image, before labels are remapped: official ids and names."""

    path: Path
    class_id: int
    class_name: str
    super_id: Optional[int] = None
    super_name: Optional[str] = None


@dataclass
class RetrievalSplit:
    """The records of one split sorted by (label, path), the class name of each label (and of each super label),
    and the problems met while reading the index files."""

    layout: str
    root: Path
    split: str
    records: list[Record]
    classes: list[str]
    super_classes: Optional[list[str]]
    problems: list[Problem]

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


ScanFn = Callable[[Path, str, Optional[Sequence[str]]], tuple[list[Entry], list[Problem]]]
RETRIEVAL_LAYOUTS: Registry = Registry("retrieval layout")


def _official_root(root: Path, marker: str, folder: str) -> Path:
    """``root`` if it holds ``marker``, else ``root/folder`` if that does (the folder the archive unpacks to)."""
    if not (root / marker).exists() and (root / folder / marker).exists():
        return root / folder
    return root


def _check_split(layout: str, split: str, train_classes: Optional[Sequence[str]]) -> None:
    if train_classes is not None:
        raise LayoutError(f"layout '{layout}' has official class ranges; --train-classes (train_classes) applies to "
                          "class folders only")
    if split not in OFFICIAL_SPLITS:
        raise ValueError(f"unknown split '{split}' for layout '{layout}'; valid: {', '.join(OFFICIAL_SPLITS)}")


def _in_split(class_id: int, split: str, ranges: tuple[range, range]) -> bool:
    train, test = ranges
    return split == "all" or class_id in (train if split == "train" else test)


def _outside_ranges(entry: Entry, ranges: tuple[range, range], source: Path, problems: list[Problem]) -> bool:
    """True (and reported) if ``entry``'s class is in neither official range."""
    train, test = ranges
    if entry.class_id in train or entry.class_id in test:
        return False
    problems.append(Problem("class outside the official ranges", entry.path,
                            f"class {entry.class_id} in {printable(source)}; expected {train.start}–{test.stop - 1}"))
    return True


def _relative_image(root: Path, text: str, source: Path, where: str, problems: list[Problem]) -> Optional[Path]:
    """``root / text`` for a relative path inside ``root``; an absolute or escaping path is reported."""
    relative = Path(text)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        problems.append(Problem("bad path", source, f"{where}: '{printable(text)}' is not a path inside the data set"))
        return None
    return root / relative


def _parse_ints(fields: Sequence[str]) -> Optional[tuple[int, ...]]:
    try:
        return tuple(int(f) for f in fields)
    except ValueError:
        return None


def _table(path: Path, ints: int, text: bool, problems: list[Problem],
           header: Optional[str] = None) -> list[tuple[int, tuple[int, ...], str]]:
    """Rows ``(line number, integer columns, rest of the line)`` of a whitespace-separated index file holding
    ``ints`` integer columns, then, if ``text``, one text column (which may contain spaces). Lines that do not
    parse are reported. A first line starting with ``header`` is skipped."""
    if not path.is_file():
        raise LayoutError(f"index file not found: {printable(path)}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LayoutError(f"cannot read index file {printable(path)}: {e.strerror or e}") from None
    # A byte order mark (files saved by Windows editors) is not part of the first id: utf-8-sig drops UTF-8's;
    # Notepad's "Unicode" is UTF-16. Lines end at "\n", "\r\n" or "\r" only, not at the Unicode separators
    # str.splitlines also takes (U+2028, ...).
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    decoded = raw.decode("utf-16" if utf16 else "utf-8-sig", errors="replace" if utf16 else "surrogateescape")
    lines = decoded.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (number == 1 and header is not None and line.split()[0] == header):
            continue
        fields = line.split(maxsplit=ints) if text else line.split()
        values = _parse_ints(fields[:ints]) if len(fields) == ints + text else None
        if values is None:
            expected = ("an integer" if ints == 1 else f"{ints} integers") + (" and a path or name" if text else "")
            problems.append(Problem("bad line", path,
                                    f"line {number}: '{printable(line.strip())}' (expected {expected})"))
            continue
        rows.append((number, values, fields[ints].strip() if text else ""))
    return rows


def _id_map(path: Path, rows: list[tuple[int, tuple[int, ...], str]], problems: list[Problem]) -> dict[int, tuple]:
    """First column → (other columns..., text) of ``rows``; a repeated id is reported and its later rows dropped."""
    mapping: dict[int, tuple] = {}
    for number, values, text in rows:
        if values[0] in mapping:
            problems.append(Problem("duplicate id", path, f"line {number}: id {values[0]} given again"))
            continue
        mapping[values[0]] = (*values[1:], text)
    return mapping


def _cub_folder_class(relative: str) -> Optional[tuple[int, str]]:
    """(class id, folder name) of an ``images.txt`` path inside a numbered class folder
    (``001.Black_footed_Albatross/...``), else None."""
    parts = Path(relative).parts
    match = CUB_CLASS_FOLDER.fullmatch(parts[0]) if len(parts) > 1 else None
    return (int(match[1]), parts[0]) if match else None


def _optional_id_map(path: Path, ints: int, text: bool, problems: list[Problem],
                     required: bool = False) -> Optional[dict[int, tuple]]:
    """:func:`_id_map` of the index file ``path`` (see :func:`_table`); None when there is no such file, unless
    ``required`` (then a ``LayoutError``)."""
    return _id_map(path, _table(path, ints, text, problems), problems) if required or path.is_file() else None


@RETRIEVAL_LAYOUTS.register("cub")
def scan_cub(root: Path, split: str, train_classes: Optional[Sequence[str]]) -> tuple[list[Entry], list[Problem]]:
    """CUB-200-2011: see the module docstring."""
    _check_split("cub", split, train_classes)
    root = _official_root(root, "images.txt", "CUB_200_2011")
    problems: list[Problem] = []
    images_file, labels_file, classes_file = root / "images.txt", root / "image_class_labels.txt", root / "classes.txt"
    images = _id_map(images_file, _table(images_file, 1, True, problems), problems)
    labels = _optional_id_map(labels_file, 2, False, problems)
    # the numbered folders that stand in for a missing image_class_labels.txt name their classes too
    names = _optional_id_map(classes_file, 1, True, problems, required=labels is not None)
    if names is not None:
        names = {i: (name,) for i, name in _distinct_names({i: row[0] for i, row in names.items()}).items()}
    for image_id in sorted(labels.keys() - images.keys()) if labels is not None else ():
        problems.append(Problem("class label without image", labels_file, f"image id {image_id}"))
    entries = []
    for image_id, (relative,) in images.items():
        path = _relative_image(root / "images", relative, images_file, f"image id {image_id}", problems)
        if path is None:
            continue
        folder = _cub_folder_class(relative)
        if labels is not None and image_id in labels:
            class_id = labels[image_id][0]
        elif labels is None and folder is not None:
            class_id = folder[0]
        else:
            why = (f"not in {labels_file.name}" if labels is not None else f"no {labels_file.name}, and not in a "
                   "numbered class folder (NNN.Name) that would tell its class")
            problems.append(Problem("image without class", path, f"image id {image_id} {why}"))
            continue
        if names is not None and class_id not in names:
            problems.append(Problem("unknown class", path, f"class {class_id} not in {classes_file.name}"))
            continue
        name = (names[class_id][0] if names is not None
                else folder[1] if folder is not None and folder[0] == class_id else f"class {class_id}")
        entry = Entry(path, class_id, name)
        source = labels_file if labels is not None else images_file
        if not _outside_ranges(entry, CUB_RANGES, source, problems) and _in_split(class_id, split, CUB_RANGES):
            entries.append(entry)
    return entries, problems


def _load_mat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError as err:
        raise ImportError("reading Cars196's .mat annotation files needs scipy (pip install scipy)") from err
    if not path.is_file():
        raise LayoutError(f"annotation file not found: {printable(path)}")
    try:
        return loadmat(path, squeeze_me=True)
    except (MatReadError, ValueError, TypeError, IndexError, OSError, NotImplementedError) as e:  # scipy's parser
        raise LayoutError(f"cannot read {printable(path)} as a MATLAB file: {e}") from None


def _class_names(mat: dict) -> dict[int, str]:
    """Class id → name from the cell array ``class_names`` of a loaded Cars196 file (empty when it has none; names
    made distinct by :func:`_distinct_names`)."""
    names = np.atleast_1d(mat.get("class_names", np.array([], dtype=object)))
    return _distinct_names({i: str(name) for i, name in enumerate(names, start=1)})


def _distinct_names(names: dict[int, str]) -> dict[int, str]:
    """``names`` (class id → name) with each name that several ids share followed by its id (``Bird (class 2)``):
    classes are told apart by name (training and validation classes, the classes a model file records), so two
    classes of one name would be trained as one."""
    counts = Counter(names.values())
    return {i: f"{name} (class {i})" if counts[name] > 1 else name for i, name in names.items()}


def _cars_annotations(mat: dict, path: Path, path_field: str) -> np.ndarray:
    """The ``annotations`` struct array (1-D) of the loaded Cars196 file ``path``; its entries must have
    ``path_field`` and ``class``."""
    annotations = mat.get("annotations")
    fields = () if annotations is None or annotations.dtype.names is None else annotations.dtype.names
    missing = [f for f in (path_field, "class") if f not in fields]
    if missing:
        raise LayoutError(f"{printable(path)} is not Cars196's {path.name}: no struct array 'annotations' with "
                          f"field(s) {', '.join(missing)}")
    return np.atleast_1d(annotations)


def _devkit_file(root: Path, name: str) -> Path:
    """``root/devkit/name`` if it exists (the devkit archive unpacks to ``devkit/``), else ``root/name``."""
    nested = root / "devkit" / name
    return nested if nested.is_file() else root / name


def _has_cars(root: Path) -> bool:
    """True if ``root`` holds Cars196's ``cars_annos.mat`` or the devkit's ``cars_train_annos.mat``."""
    return (root / "cars_annos.mat").is_file() or _devkit_file(root, CARS_DEVKIT["cars_train"]).is_file()


def _cars_root(root: Path) -> Path:
    """``root``, or ``root/stanford_cars`` (where torchvision's ``StanfordCars`` puts the devkit distribution) when
    only that holds Cars196."""
    return root / CARS_FOLDER if not _has_cars(root) and _has_cars(root / CARS_FOLDER) else root


def _is_cars_devkit(root: Path) -> bool:
    """True if ``root`` holds Cars196 in the devkit distribution (no ``car_ims/``, ``cars_train_annos.mat``)."""
    return not (root / "car_ims").is_dir() and _devkit_file(root, CARS_DEVKIT["cars_train"]).is_file()


def _cars_sources(root: Path) -> tuple[list[tuple[Path, Path, str]], dict[int, str]]:
    """(annotation file, image folder, path field) of each annotation file of the Cars196 copy at ``root``, and
    class id → name from ``cars_meta.mat`` (devkit; empty for ``cars_annos.mat``, which holds its own)."""
    if not _is_cars_devkit(root):
        return [(root / "cars_annos.mat", root, "relative_im_path")], {}
    test_labels = _devkit_file(root, CARS_DEVKIT["cars_test"])
    if not test_labels.is_file():
        raise LayoutError(f"Cars196 test labels not found: {printable(test_labels)} (the devkit's "
                          f"cars_test_annos.mat has no classes; cars_test_annos_withlabels.mat is a separate download)")
    names = _class_names(_load_mat(_devkit_file(root, "cars_meta.mat")))
    return [(_devkit_file(root, annos), root / folder, "fname") for folder, annos in CARS_DEVKIT.items()], names


def _integer(value: object) -> Optional[int]:
    """``value`` as an int if it is an integral number (not text), else None."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == value else None


@RETRIEVAL_LAYOUTS.register("cars")
def scan_cars(root: Path, split: str, train_classes: Optional[Sequence[str]]) -> tuple[list[Entry], list[Problem]]:
    """Cars196: see the module docstring."""
    _check_split("cars", split, train_classes)
    sources, names = _cars_sources(_cars_root(root))
    problems: list[Problem] = []
    entries = []
    for mat_file, images, path_field in sources:
        mat = _load_mat(mat_file)
        annotations = _cars_annotations(mat, mat_file, path_field)
        names = names or _class_names(mat)
        for number, annotation in enumerate(annotations, start=1):
            relative, class_value = annotation[path_field], annotation["class"]
            where = f"annotation {number}"
            if not isinstance(relative, str):
                problems.append(Problem("bad annotation", mat_file, f"{where}: {path_field} is not text"))
                continue
            path = _relative_image(images, relative, mat_file, where, problems)
            if path is None:
                continue
            class_id = _integer(class_value)
            if class_id is None:
                problems.append(Problem("bad annotation", path, f"{where}: class {class_value!r} is not an integer"))
                continue
            entry = Entry(path, class_id, names.get(class_id, f"class {class_id}"))
            if not _outside_ranges(entry, CARS_RANGES, mat_file, problems) and _in_split(class_id, split, CARS_RANGES):
                entries.append(entry)
    return entries, problems


@RETRIEVAL_LAYOUTS.register("sop")
def scan_sop(root: Path, split: str, train_classes: Optional[Sequence[str]]) -> tuple[list[Entry], list[Problem]]:
    """Stanford Online Products: see the module docstring. Super-class names are the top folders of the paths."""
    _check_split("sop", split, train_classes)
    root = _official_root(root, "Ebay_train.txt", "Stanford_Online_Products")
    problems: list[Problem] = []
    entries = []
    for part in ("train", "test") if split == "all" else (split,):
        index = root / f"Ebay_{part}.txt"
        for number, (_, class_id, super_id), relative in _table(index, 3, True, problems, header="image_id"):
            path = _relative_image(root, relative, index, f"line {number}", problems)
            if path is not None:
                super_name = Path(relative).parts[0] if len(Path(relative).parts) > 1 else str(super_id)
                entries.append(Entry(path, class_id, str(class_id), super_id, super_name))
    return entries, problems


def _folder_classes(split: str, available: list[str], splits_file: Path,
                    train_classes: Optional[Sequence[str]]) -> list[str]:
    """The class folders of ``split`` (see the module docstring)."""
    if train_classes is not None and split not in ("train", "test"):  # 'all' would take every class without a word
        raise ValueError(f"split '{printable(split)}' with --train-classes (train_classes), which choose the 'train' "
                         "classes and make the others 'test': give split train or test, or leave the training "
                         "classes out" + (" (split 'all' takes every class)" if split == "all" else ""))
    if split == "all":
        return available
    if train_classes is not None:
        try:
            train = set(resolve_groups(train_classes, available, "class"))
        except ValueError as e:
            raise ValueError(f"--train-classes: {e}") from None
        return [c for c in available if (c in train) == (split == "train")]
    if not splits_file.is_file():
        if split in ("train", "test"):
            how = (f"give --train-classes a,b,... (the other class folders are 'test') or write "
                   f"{printable(splits_file)} ({{\"train\": [class folder, ...], \"test\": [...]}})")
        else:
            how = f"write {printable(splits_file)} ({{\"{printable(split)}\": [class folder, ...], ...}})"
        raise LayoutError(f"cannot tell the '{split}' classes of {printable(splits_file.parent)}: no {SPLITS_FILE} "
                          f"there and no train classes given: {how}; split 'all' takes every class")
    classes = list(resolve_split(splits_file, split, available, "class"))
    if split in ("train", "test"):
        other = "test" if split == "train" else "train"
        try:
            both = sorted(set(classes) & set(resolve_split(splits_file, other, available, "class")))
        except KeyError:  # a file without the other split
            both = []
        if both:
            raise ValueError(f"{printable(splits_file)}: the class(es) {', '.join(map(printable, both))} are in both "
                             "'train' and 'test': the test scores would count classes the model was trained on")
    return classes


def _folders_without_images(root: Path, available: Sequence[str]) -> list[str]:
    """The visible folders of the class folders' root (``root/images`` if there is one, else ``root``) that are
    neither among the class folders holding images, ``available``, nor hold some of them (nested: ``a/b``)."""
    top = root / "images" if (root / "images").is_dir() else root
    try:
        names = {e.name for e in os.scandir(top) if not e.name.startswith(".") and e.is_dir()}
    except OSError:
        return []
    return sorted(names - {name.split("/")[0] for name in available})


def _split_classes(root: Path, split: str, available: list[str], train_classes: Optional[Sequence[str]]) -> list[str]:
    """:func:`_folder_classes` of the class folders holding images, ``available``; a class named for ``split``
    whose folder holds no image file is refused as such (not as a name not found), and one named for the other
    split of ``splits.json`` does not stop this one."""
    splits_file = root / SPLITS_FILE
    try:
        return _folder_classes(split, available, splits_file, train_classes)
    except ValueError:
        empty = _folders_without_images(root, available)
        if not empty:
            raise
        folders = shown_names(empty, quote=True)
        try:
            classes = _folder_classes(split, sorted([*available, *empty]), splits_file, train_classes)
        except ValueError as error:  # another problem, or one the folders without images do not explain
            raise ValueError(f"{error} (class folders holding no image file: {folders})") from None
    imageless = [name for name in classes if name in empty]
    if imageless:
        named = shown_names(imageless, quote=True)
        source = "--train-classes" if train_classes is not None else f"split '{split}' of {printable(splits_file)}"
        raise LayoutError(f"the class folder(s) {named} named by {source} hold no image file (supported: "
                          f"{', '.join(sorted(IMAGE_SUFFIXES))}): add their images or leave them out")
    return classes


@RETRIEVAL_LAYOUTS.register("folders")
def scan_folders(root: Path, split: str, train_classes: Optional[Sequence[str]]) -> tuple[list[Entry], list[Problem]]:
    """``<root>/<class>/*`` class folders: see the module docstring. Images directly in ``root`` are reported."""
    scan = find_samples(root, "folders")
    problems = list(scan.problems)
    flat = {root, root / "images"}  # the images root of coseg's folders layout: no class folder
    problems.extend(Problem("outside any class", s.image) for s in scan.samples if s.image.parent in flat)
    inside = [s for s in scan.samples if s.image.parent not in flat]
    available = sorted({s.group for s in inside})
    if not available:
        raise LayoutError(f"no class folders with images under {printable(root)}")
    wanted = set(_split_classes(root, split, available, train_classes))
    class_ids = {name: i for i, name in enumerate(available)}
    return [Entry(s.image, class_ids[s.group], s.group) for s in inside if s.group in wanted], problems


def _is_cub(root: Path) -> bool:
    """True if ``root`` holds CUB-200-2011: ``images.txt`` and one of ``CUB_FILES`` or a numbered class folder
    (``images/001.Black_footed_Albatross``)."""
    if not (root / "images.txt").is_file():
        return False
    if any((root / name).is_file() for name in CUB_FILES):
        return True
    try:
        with os.scandir(root / "images") as entries:
            return any(e.is_dir() and CUB_CLASS_FOLDER.fullmatch(e.name) for e in entries)
    except OSError:
        return False


def detect_retrieval_layout(root: PathLike) -> str:
    """The layout name ``root`` looks like: cub, cars or sop by their index files (CUB: ``images.txt`` with another
    of its files or numbered class folders), else folders."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder not found: {printable(root)}")
    if _is_cub(_official_root(root, "images.txt", "CUB_200_2011")):
        return "cub"
    if _has_cars(_cars_root(root)):
        return "cars"
    sop = _official_root(root, "Ebay_train.txt", "Stanford_Online_Products")
    if (sop / "Ebay_train.txt").is_file() or (sop / "Ebay_test.txt").is_file():
        return "sop"
    return "folders"


def _numbering(pairs: Iterable[tuple[int, str]]) -> tuple[dict[int, int], list[str]]:
    """Official id → label 0..C−1 in the order of the ids, and the name of each label (its first pair's)."""
    names: dict[int, str] = {}
    for official, name in pairs:
        names.setdefault(official, name)
    order = sorted(names)
    return {official: label for label, official in enumerate(order)}, [names[i] for i in order]


def load_retrieval_split(root: PathLike, split: str = "train", layout: str = "auto",
                         train_classes: Optional[Sequence[str]] = None) -> RetrievalSplit:
    """The records of ``split`` (``train``, ``test``, ``all``; folders: any split of their ``splits.json``) of the
    data set at ``root`` in ``layout`` (a ``RETRIEVAL_LAYOUTS`` name or ``"auto"``).

    ``train_classes`` (folders only): class folder names forming ``train``; the others form ``test``.
    Listed images missing on disk are reported in ``problems`` and left out. Raises ``LayoutError`` when the
    folder, an index file or every image of the split is missing, ``KeyError`` for an unknown layout or split
    name in ``splits.json``, ``ValueError`` for an unknown split or class name, ``TypeError`` for ``train_classes``
    given as one string (its letters would be taken as class names)."""
    if isinstance(train_classes, str):
        raise TypeError(f"train_classes must be a list of class folder names, not the string "
                        f"'{printable(train_classes)}' (whose letters would be taken as names)")
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder not found: {printable(root)}")
    name = detect_retrieval_layout(root) if layout == "auto" else layout
    scan: ScanFn = RETRIEVAL_LAYOUTS.get(name)
    entries, problems = scan(root, split, train_classes)
    present = []
    listed: dict[Path, Entry] = {}
    for entry in entries:
        first = listed.setdefault(entry.path, entry)
        if first is not entry:  # one file twice would be its own nearest neighbour
            detail = f"listed again in the {name} index"
            if first.class_id != entry.class_id:
                detail += f" as class '{printable(entry.class_name)}' (kept: '{printable(first.class_name)}')"
            problems.append(Problem("duplicate image", entry.path, detail))
        elif entry.path.is_file():
            present.append(entry)
        else:
            problems.append(Problem("missing image", entry.path, f"listed in the {name} index"))
    if not present:
        raise LayoutError(f"no images of split '{split}' found under {printable(root)} in layout '{name}'"
                          + (f" ({len(problems)} problem(s), first: {problems[0]})" if problems else ""))
    labels, classes = _numbering((e.class_id, e.class_name) for e in present)
    has_super = all(e.super_id is not None for e in present)
    super_labels, super_classes = _numbering((e.super_id, e.super_name) for e in present) if has_super else ({}, None)
    records = sorted((Record(e.path, labels[e.class_id], super_labels.get(e.super_id)) for e in present),
                     key=lambda r: (r.label, r.path))
    problems.sort(key=lambda p: (p.path, p.kind))
    return RetrievalSplit(name, root, split, records, classes, super_classes, problems)
