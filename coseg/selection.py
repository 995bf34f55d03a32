"""Choosing groups for a run: from a splits file entry, an explicit list, or all groups of a scan."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional, Sequence

from coseg.atomic import PathLike
from coseg.data import Problem, Sample, Scan, printable, resolve_groups, resolve_split, shown_names
from coseg.data.layouts import unread_mask_folder
from coseg.data.splits import repeated
from coseg.engine.config import ConfigError


def default_splits_file(data: Path, splits: Optional[str]) -> Optional[Path]:
    """``splits`` if given, else ``<data>/splits.json`` when it exists."""
    if splits:
        return Path(splits)
    candidate = Path(data) / "splits.json"
    return candidate if candidate.is_file() else None


def check_group_choice(explicit: Sequence[str], split: Optional[str], splits: Optional[str], what: str,
                       flags: tuple[str, str, str]) -> None:
    """Refuse (``ConfigError``: a usage error) group options one of which would be ignored by :func:`choose_groups`:
    an empty ``split`` key (all groups would be chosen, those of the other splits too), ``explicit`` groups with a
    ``split`` (the explicit list would win) and a ``splits`` file without a ``split`` (nothing of it would be read).
    ``what`` names the groups, ``flags`` the options (explicit groups, split key, splits file) in the message."""
    groups_flag, split_flag, splits_flag = flags
    if split is not None and not split.strip():
        raise ConfigError(f"{split_flag} is empty: give the key of the {what} in the splits file (e.g. test), or leave "
                          f"{split_flag} out to choose all groups")
    if explicit and split:
        raise ConfigError(f"{groups_flag} and {split_flag} {printable(split)} both choose the {what}: give one of them")
    if splits and not split:
        raise ConfigError(f"{splits_flag} {printable(splits)} is read only for {split_flag}, which is not given: add "
                          f"it (the key of the {what} in that file), or leave {splits_flag} out")


def choose_groups(scan: Scan, splits_file: Optional[Path], split: Optional[str], explicit: Sequence[str]) -> list[str]:
    """Folder names of the chosen groups: ``explicit`` names, else entry ``split`` of ``splits_file`` (an entry
    listing no group is a ``ValueError``), else all groups of ``scan`` that have masks. Names are matched leniently
    (see ``resolve_groups``); an ``explicit`` name given more than once is a ``ValueError`` naming it, as are two
    names of one group, and one not found (of a folder there holding no image read, that folder:
    :func:`no_group_reason`)."""
    available = sorted({s.group for s in scan.samples})
    if explicit:
        twice = repeated(explicit)
        if twice:
            raise ValueError(f"{len(twice)} group name(s) given more than once: {shown_names(twice, quote=True)} (name "
                             "each group once)")
        return list(resolve_groups(list(explicit), available, unmatched=partial(no_group_reason, scan)))
    if split:
        if splits_file is None:
            raise ValueError(f"split '{split}' was asked for but there is no splits file: "
                             f"{printable(scan.root / 'splits.json')} does not exist (give --splits FILE)")
        chosen = list(resolve_split(splits_file, split, available, unmatched=partial(no_group_reason, scan)))
        if not chosen:
            raise ValueError(f"split '{printable(split)}' of {printable(splits_file)} lists no group, so there is "
                             "nothing to choose")
        return chosen
    return sorted({s.group for s in scan.labelled})


def no_group_reason(scan: Scan, name: str) -> Optional[str]:
    """Why the group ``name`` is none of ``scan``'s though a folder of that name is where its groups are
    (:func:`_group_folders`): it holds no image, or none the scan kept (naming how many files or folders it left out
    there and the first: unsupported files, ambiguous images, ...); None when there is no such folder."""
    relative = Path(name)
    if not relative.parts or relative.is_absolute() or any(part.startswith(".") for part in relative.parts):
        return None  # no folder of a group: the folder itself, outside it, or hidden (never read)
    for base in _group_folders(scan):
        folder = base / relative
        try:
            if not folder.is_dir() or any(folder in sample.image.parents for sample in scan.samples):
                continue  # no folder, or one holding groups of other names (a/b of a)
        except OSError:  # a folder that cannot be looked at
            continue
        left_out = [p for p in scan.problems if p.path == folder or folder in p.path.parents]
        return (f"the folder {printable(folder)} holds no image" if not left_out else
                f"the folder {printable(folder)} holds no image read: {len(left_out)} file(s) or folder(s) left out "
                f"there, the first: {left_out[0]}")
    return None


def _group_folders(scan: Scan) -> list[Path]:
    """The folders under which ``scan``'s groups are named by their path (the images folder of the folders layout, an
    SBCoseg data set, Internet's ``Data``): each sample's folder less its group's path, where that is inside the
    scan's root; then the root."""
    found: dict[Path, None] = {}
    for sample in scan.samples:
        parts, folder = Path(sample.group).parts, sample.image.parent
        if parts and folder.parts[-len(parts):] == parts:
            base = Path(*folder.parts[:-len(parts)])
            if base == scan.root or scan.root in base.parents:
                found[base] = None
    found[scan.root] = None
    return list(found)


def groups_without_masks(scan: Scan, explicit: Sequence[str], split: Optional[str]) -> list[Problem]:
    """One problem per group of ``scan`` no image of which has a mask, at the folder of its first image, when the
    groups are chosen by default (no ``explicit`` names, no ``split``): :func:`choose_groups` then leaves them out, and
    a class folder whose ground truth is missing would go unnoticed."""
    if explicit or split:
        return []
    labelled = {s.group for s in scan.labelled}
    images: dict[str, list[Sample]] = {}
    for sample in scan.samples:
        if sample.group not in labelled:
            images.setdefault(sample.group, []).append(sample)
    return [Problem("group without masks", samples[0].image.parent,
                    f"group '{printable(group)}': none of its {len(samples)} image(s) has a mask, so it is left out")
            for group, samples in sorted(images.items())]


def samples_of(scan: Scan, groups: Sequence[str], labelled: bool = True) -> list[Sample]:
    wanted = set(groups)
    pool = scan.labelled if labelled else scan.samples
    return [s for s in pool if s.group in wanted]


def problems_of(scan: Scan, groups: Sequence[str]) -> list[Problem]:
    """The scan's problems that may concern the chosen ``groups``: all but those in a folder that holds images or
    masks of other groups only (an unpaired file of a group the run does not use is not its concern)."""
    wanted = set(groups)
    owners: dict[Path, set[str]] = {}
    for sample in scan.samples:
        for path in (sample.image, sample.mask):
            if path is not None:
                owners.setdefault(path.parent, set()).add(sample.group)
    return [p for p in scan.problems if p.path.parent not in owners or owners[p.path.parent] & wanted]


def nothing_labelled(data: PathLike, layout: str, scan: Scan, problems: Sequence[Problem], purpose: str) -> str:
    """Why a command has nothing to ``purpose`` (``evaluate``, ``train on``): no image of ``data`` has a mask,
    with the layout read (``layout``: the option given) and the first of the files left unpaired (``problems``;
    e.g. masks named ``x_mask.png`` for images ``x.jpg``), which a run lists only at its end; a mask folder the layout
    does not look for (``segmentations/``: :func:`~coseg.data.layouts.unread_mask_folder`) is named first."""
    first = next((p for p in problems if unread_mask_folder(p)), problems[0] if problems else None)
    which = "the first" if problems and first is problems[0] else "among them"
    return (f"{printable(Path(data))}: none of its {len(scan.samples)} image(s) has a mask ({scan.layout} layout"
            + (", as --layout says" if layout != "auto" else "")
            + f"; a mask is paired with the image of its stem), so there is nothing to {purpose}"
            + (f"; {len(problems)} unpaired file(s) or folder(s), {which}: {first}" if problems else ""))
