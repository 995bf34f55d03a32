"""Choosing groups: named splits from a JSON file, held-out validation groups, subset-stratified splits.

Groups that hold identical image files (a subset folder copied out of a full class) are drawn together, so that a
held-out group never shares an image with a kept one (:func:`groups_sharing_images`).

A splits JSON maps split names to either a list of group names or a mapping ``{group folder: short name}``
(iCoseg's ``test8`` uses the short names of the DOCS/SSNM papers). Names are resolved against the group folders
actually present, tolerating differences in case, Unicode normalisation, whitespace and punctuation; a mapping's
short name is tried when its folder name is not found, and a name that begins exactly one folder name (or, when it
begins none, is whole words of exactly one) matches it: "006" is iCoseg's "006 Red Sox Players ...", not also a
folder whose name holds "2006", and "dog" is not "hotdog".
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from coseg.atomic import PathLike
from coseg.data.io import printable, shown_names
from metric._checks import check_count

if TYPE_CHECKING:
    from coseg.data.layouts import Sample

Wanted = Union[Sequence[str], Mapping[str, str]]


def load_split(path: PathLike, name: str) -> dict[str, str]:
    """Split ``name`` of the JSON file at ``path`` as ``{name as written: short name}`` (a list maps to itself; one
    naming an entry twice is a ``ValueError``, and so is a file naming a split, or a mapping a folder, twice)."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text(encoding="utf-8-sig"),  # with or without a BOM (Notepad)
                            object_pairs_hook=_unique_keys)
    except OSError as e:  # its strerror only: the message names the file once
        raise ValueError(f"cannot read splits file {printable(path)}: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"cannot read splits file {printable(path)}: {e}") from None
    if not isinstance(splits, dict) or name not in splits:
        valid = ", ".join(sorted(splits)) if isinstance(splits, dict) else "(not a JSON object)"
        raise KeyError(f"split '{name}' not in {printable(path)}; splits there: {valid}")
    entry = splits[name]
    if isinstance(entry, list) and all(isinstance(g, str) for g in entry):
        twice = repeated(entry)
        if twice:  # most likely a slip (a name meant for another entry), as on the command line
            raise ValueError(f"split '{name}' in {printable(path)} lists {len(twice)} name(s) more than once: "
                             f"{shown_names(twice, quote=True)}")
        return {g: g for g in entry}
    if isinstance(entry, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        return dict(entry)
    raise ValueError(f"split '{name}' in {printable(path)} must be a list of names or a mapping name → short name")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; ``ValueError`` when it names a key twice (JSON keeps the last one silently: a
    split copied and edited without renaming it would choose other groups than the file seems to say)."""
    twice = repeated(key for key, _ in pairs)
    if twice:
        raise ValueError(f"{len(twice)} key(s) given more than once in one object: {shown_names(twice, quote=True)}")
    return dict(pairs)


def repeated(names: Iterable[str]) -> list[str]:
    """The names given more than once in ``names``, in the order first given."""
    return [name for name, count in Counter(names).items() if count > 1]


def resolve_split(path: PathLike, name: str, available: Iterable[str], noun: str = "group",
                  unmatched: Optional[Callable[[str], Optional[str]]] = None) -> dict[str, str]:
    """:func:`resolve_groups` of split ``name`` of the splits file at ``path``; a name not found is reported with
    the file and the split it came from."""
    wanted = load_split(path, name)
    try:
        return resolve_groups(wanted, available, noun, unmatched)
    except ValueError as e:
        raise ValueError(f"split '{name}' of {printable(Path(path))}: {e}") from None


def _loose(name: str) -> str:
    """Case, Unicode form, whitespace and punctuation removed: '025 Airshows-helicopter' → '025airshowshelicopter'."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", name).casefold())


def _holds_words(folder: str, key: str) -> bool:
    """Whether ``key`` (:func:`_loose`) is a run of whole words of ``folder``'s name: "zoo2006" of "... Zoo 2006-x",
    not "dog" of "hotdog"."""
    words = [w for w in re.split(r"[\W_]+", unicodedata.normalize("NFKC", folder).casefold()) if w]
    bounds = {0, *itertools.accumulate(len(w) for w in words)}
    text = "".join(words)
    return any(text.startswith(key, i) and i + len(key) in bounds for i in bounds)


def _match(name: str, available: Sequence[str]) -> list[str]:
    """Folders matching ``name``: exact, then loosely equal, then those beginning with it, then those holding it as
    whole words (loosely: :func:`_loose`)."""
    if name in available:
        return [name]
    key = _loose(name)
    if not key:
        return []
    equal = [g for g in available if _loose(g) == key]
    starting = equal or [g for g in available if _loose(g).startswith(key)]
    return starting or [g for g in available if _holds_words(g, key)]


def resolve_groups(wanted: Wanted, available: Iterable[str], noun: str = "group",
                   unmatched: Optional[Callable[[str], Optional[str]]] = None) -> dict[str, str]:
    """Map each wanted group to its folder among ``available``: ``{folder: short name}`` in the order wanted.

    ``wanted`` is a list of names or a mapping ``{folder name: short name}`` (as ``load_split`` returns).
    Raises ``ValueError`` listing the names not found (with close folder names, and what ``unmatched`` says of the
    name when it says something: why a folder of that name is no group) or matching several folders, and when two
    names resolve to one folder; ``noun`` names what they are in it ("class" for retrieval)."""
    available = sorted(set(available))
    plural = noun + ("es" if noun.endswith("s") else "s")
    pairs = wanted.items() if isinstance(wanted, Mapping) else ((w, w) for w in wanted)
    resolved: dict[str, str] = {}
    errors = []
    for name, short in pairs:
        matches = _match(name, available) or _match(short, available)
        if len(matches) == 1:
            if matches[0] in resolved:
                comma = (" (a name holding a comma is split at it on the command line: name it in an @FILE, one "
                         "name a line, or leave the comma out, names match loosely)" if "," in matches[0] else "")
                errors.append(f"'{printable(name)}' and another name both resolve to '{printable(matches[0])}'{comma}")
            resolved[matches[0]] = short
        elif matches:
            errors.append(f"'{printable(name)}' matches {len(matches)} {plural}: "
                          + ", ".join(f"'{printable(m)}'" for m in matches))
        else:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            hint = f" (closest: {', '.join(repr(printable(c)) for c in close)})" if close else ""
            reason = None if unmatched is None else unmatched(name)
            errors.append(f"'{printable(name)}' not found{hint}" + ("" if reason is None else f": {reason}"))
    if errors:
        raise ValueError(f"cannot resolve {len(errors)} {noun} name(s) among {len(available)} {plural}: "
                         + "; ".join(errors))
    return resolved


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")


def _holdout_count(n: int, fraction: Optional[float], number: Optional[int]) -> int:
    if (fraction is None) == (number is None):
        raise ValueError("give exactly one of fraction and number")
    if fraction is not None:
        _check_fraction(fraction)
        return max(1, round(fraction * n)) if fraction > 0 else 0
    check_count(number, 0, "number")
    return number


def draw_units(groups: Iterable[str], together: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Group → the key it is drawn under: the key ``together`` maps it to (:func:`groups_sharing_images`), else
    itself; groups of one key are drawn as one and counted once."""
    return {g: (together or {}).get(g, g) for g in groups}


def sharing_pairs(chosen: Iterable[str], others: Iterable[str], together: Mapping[str, str]) -> list[tuple[str, str]]:
    """(c, o) for every group c of ``chosen`` and o of ``others`` that ``together`` links (identical image files)."""
    others = list(others)
    return [(c, o) for c in chosen if c in together for o in others if together.get(o) == together[c]]


def holdout_groups(groups: Iterable[str], fraction: Optional[float] = None, number: Optional[int] = None,
                   seed: int = 0, together: Optional[Mapping[str, str]] = None) -> tuple[list[str], list[str]]:
    """Split ``groups`` into (kept, held out), both sorted; held out: ``number`` groups or ``fraction`` of them
    (at least one when ``fraction > 0``), drawn with ``seed``. At least one group is always kept: ``ValueError``
    when that many would leave none. Groups that ``together`` maps to one key (:func:`groups_sharing_images`) are
    drawn as one and counted once."""
    groups = sorted(set(groups))
    unit = draw_units(groups, together)
    units = sorted(set(unit.values()))
    count = _holdout_count(len(units), fraction, number)
    if count >= len(units) and count > 0:
        shared = " (groups sharing images count once)" if len(units) < len(groups) else ""
        raise ValueError(f"cannot hold out {count} of {len(units)} groups{shared} and keep one for training")
    held = set(random.Random(seed).sample(units, count))
    return [g for g in groups if unit[g] not in held], [g for g in groups if unit[g] in held]


def groups_sharing_images(samples: Iterable[Sample]) -> dict[str, str]:
    """For the groups that hold an image also in another group (the same file contents), group → the first name
    (sorted) of the set of groups linked that way; :func:`holdout_groups` keeps each set on one side. Only files of
    a size found in two groups are read; empty files (failed downloads, skipped when decoded) link nothing."""
    by_size: dict[int, list[Sample]] = {}
    for sample in samples:
        try:
            size = sample.image.stat().st_size
        except OSError:  # unreadable: skipped (and reported) when it is decoded
            continue
        if size:
            by_size.setdefault(size, []).append(sample)
    parent: dict[str, str] = {}

    def root(group: str) -> str:
        while parent.setdefault(group, group) != group:
            group = parent[group]
        return group

    for candidates in by_size.values():
        if len({s.group for s in candidates}) < 2:
            continue
        first_of: dict[bytes, str] = {}
        for sample in candidates:
            try:
                digest = hashlib.sha256(sample.image.read_bytes()).digest()
            except OSError:
                continue
            a, b = sorted((root(sample.group), root(first_of.setdefault(digest, sample.group))))
            parent[b] = a
    sets = {g: root(g) for g in parent}
    sizes = Counter(sets.values())
    return {g: r for g, r in sets.items() if sizes[r] > 1}


def _subset_seed(seed: int, name: Optional[str]) -> int:
    """A seed derived from ``seed`` and a name, stable across runs and platforms (unlike ``hash``)."""
    return random.Random(f"{seed}:{name}").getrandbits(63)


def stratified_holdout(group_subsets: Mapping[str, Optional[str]], fraction: float, seed: int = 0,
                       together: Optional[Mapping[str, str]] = None) -> tuple[list[str], list[str]]:
    """Split groups into (kept, held out), holding out ``fraction`` of each subset (SBCoseg: ECFB, TR, ...).

    Each subset holds out ``round(fraction × size)`` groups but keeps at least one; a subset of one group is
    kept whole. The draw of each subset depends only on ``seed`` and the subset's name. Groups that ``together``
    maps to one key are drawn as one, in the subset of the first of them (sorted)."""
    _check_fraction(fraction)
    together = together or {}
    first_subset: dict[str, Optional[str]] = {}
    for group in sorted(group_subsets):
        first_subset.setdefault(together.get(group, group), group_subsets[group])
    by_subset: dict[Optional[str], list[str]] = {}
    for group in group_subsets:
        key = together.get(group, group)
        by_subset.setdefault(first_subset[key], []).append(group)
    kept, held = [], []
    for subset, members in by_subset.items():
        units = len(set(draw_units(members, together).values()))
        count = min(round(fraction * units), units - 1)
        k, h = holdout_groups(members, number=count, seed=_subset_seed(seed, subset), together=together)
        kept += k
        held += h
    return sorted(kept), sorted(held)


def train_test_split(group_subsets: Mapping[str, Optional[str]], test_fraction: float, seed: int = 0,
                     together: Optional[Mapping[str, str]] = None) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` of the groups, for a data set without an official split: of each subset
    where the groups have one (SBCoseg: ECFB, TR, ...), else of all, ``test_fraction`` (at least one group) is
    drawn for testing with ``seed``; groups that ``together`` maps to one key fall on one side."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = (stratified_holdout(group_subsets, test_fraction, seed, together) if any(group_subsets.values())
                   else ([], []))
    if not test:
        try:
            train, test = holdout_groups(group_subsets, fraction=test_fraction, seed=seed, together=together)
        except ValueError as e:
            raise ValueError(f"test_fraction {test_fraction}: {e}") from None
    return {"train": train, "test": test}
