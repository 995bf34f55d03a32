"""``coseg report``: one static HTML page from whatever result folders it finds.

What a folder can hold (each kind is recognised by its files):

- a training run (``log.csv``, ``config.yaml``; co-segmentation or retrieval): loss and validation curves, the
  epoch table, the config;
- a co-segmentation ``evaluate`` output (``summary.json``, ``per_image.csv``, and with ``--report`` the predicted
  masks in ``predictions/``): scores per group and per image, worst first, and image | ground truth | prediction
  grids;
- a retrieval ``evaluate --report`` output (``summary.json``, ``neighbours.csv``, ``recall_at_k.csv``): scores, the
  R@K curve and query → nearest-neighbour grids; without ``--report`` (``summary.json`` alone) the scores;
- a ``predict --report`` output (``predict.json`` beside the masks): image | prediction grids.

The folder given and its immediate sub-folders are searched, so a run folder holding its evaluations gives one
report of everything; an evaluation whose ``summary.json`` names a checkpoint inside a training run also brings
that run's curves and config."""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import yaml

from coseg.atomic import NAME_BYTES, TEMPORARY_MARK, PathLike, atomic_path, fitted_name
from coseg.data import printable
from coseg.data.io import natural_key
from coseg.engine.run_lock import folder_lock
from coseg.predict import is_inside
from coseg.report.files import NEIGHBOURS, read_json, recorded_paths
from coseg.report.html import Page, esc
from coseg.report.retrieval import is_retrieval_evaluation, retrieval_section
from coseg.report.segmentation import evaluation_section, is_evaluation, is_prediction, prediction_section
from coseg.report.training import is_training_run, training_section

REPORT_NAME = "report.html"


@dataclass
class ReportResult:
    """The page written, the folder of its PNG files, its section headings, the sections that failed (heading,
    reason; the page says why too), the folders left out as they cannot be listed or entered (the page names
    them) and why each picture not shown was not (its caption says so too)."""

    path: Path
    files: Path
    sections: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    left_out: list[Path] = field(default_factory=list)
    unshown: list[str] = field(default_factory=list)


REPORT_FILE = re.compile(r"s\d+_.*\.png")
"""The names of the plots and thumbnails a report writes into its files folder (section prefix ``s<n>_``)."""
BROWSER_FILE = re.compile(r"\.DS_Store|Thumbs\.db|desktop\.ini|\._.*")
"""The files a file browser leaves in a folder it showed (macOS Finder, Windows Explorer; ``._*``: macOS on other
file systems): replaced with the folder like the report's own."""


def files_folder(page: Path) -> Path:
    """The folder of a page's PNG files: ``report.html`` → ``report_files/`` (a page name too long for that ends in
    ``~<hash>_files``, :func:`fitted_name`)."""
    return page.with_name(fitted_name(page.stem, "_files"))


MADE_BY = "Made by <code>coseg report</code>"
"""The start of every report page's introduction (since the first version), which tells a report from other files."""


def is_report(page: Path) -> bool:
    """Whether the file ``page`` is a page a report wrote (:data:`MADE_BY` in its first 64 KiB)."""
    try:
        with open(page, "rb") as f:
            return MADE_BY.encode() in f.read(1 << 16)
    except OSError:
        return False


def remove_report(folder: Path) -> None:
    """Remove ``folder/report.html`` and its PNG folder, an earlier evaluation's report that a new evaluation
    written without ``--report`` would leave showing the earlier scores; a page or a PNG folder holding files no
    report wrote is left alone. While a `coseg report` writes that page (it holds :func:`_report_locks`), nothing is
    removed: ``ValueError`` naming the folder, the page and that process."""
    page = folder / REPORT_NAME
    files = files_folder(page)
    if not _earlier_report(page, files):
        return  # nothing to remove: no lock taken, no lock file made in a folder perhaps read-only
    with _report_locks(page, files, f"`coseg report` is writing {printable(page.name)} there, which this run would "
                       "remove", f"`coseg report` is writing pictures into {printable(files.name)} there, which this "
                       "run would remove"):
        for path in _earlier_report(page, files):  # again: the report that held the locks may have replaced them
            if path == files:
                shutil.rmtree(path)
            else:
                path.unlink()


def _earlier_report(page: Path, files: Path) -> list[Path]:
    """Of the ``page`` and its PNG folder ``files``, those a report wrote: the page if :func:`is_report`, the folder
    if it holds only files a report (or a file browser) leaves there."""
    found = [page] if is_report(page) else []
    if files.is_dir() and not files.is_symlink() and all(
            REPORT_FILE.fullmatch(p.name) or BROWSER_FILE.fullmatch(p.name) for p in files.iterdir()):
        found.append(files)
    return found


@contextlib.contextmanager
def _report_locks(page: Path, files: Path, busy_page: str, busy_files: str) -> Iterator[None]:
    """Hold the locks of the report ``page`` for the block: the page's, then its pictures folder's (``files``), which
    pages of one stem (x.html, x.htm) share; while another process holds one, ``ValueError`` naming the folder,
    ``busy_page`` or ``busy_files`` and that process (:func:`~coseg.engine.run_lock.folder_lock`)."""
    with (folder_lock(page.parent, fitted_name(f".{page.name}", ".lock"), busy_page),
          folder_lock(files.parent, fitted_name(f".{files.name}", ".lock"), busy_files)):
        yield


def _enterable(folder: Path) -> bool:
    """Whether ``folder`` is a folder that can be listed and entered; one that cannot (``chmod 000``, another user's,
    ``lost+found`` on a volume; ``chmod 444``: listed, yet its files cannot be looked at) is left out of the report,
    where looking for its files would stop the whole report with PermissionError."""
    try:
        with os.scandir(folder):
            pass
        os.stat(os.path.join(folder, "."))  # looks through the folder, which takes the right to enter it
        return True
    except OSError:
        return False


def _candidates(root: Path, skip: Path, left_out: list[Path]) -> list[Path]:
    """``root`` and its sub-folders but ``skip`` (the report's files folder), those that cannot be listed or
    entered, which are added to ``left_out``, and those that are a folder listed before (a symbolic link to it)."""
    subfolders = sorted((p for p in root.iterdir() if p.is_dir() and p.resolve() != skip.resolve()),
                        key=lambda p: natural_key(printable(p.name)))
    left_out.extend(p for p in subfolders if p not in left_out and not _enterable(p))
    found: dict[Path, Path] = {}  # resolved → the first path to it
    for folder in [root] + [p for p in subfolders if p not in left_out]:
        found.setdefault(folder.resolve(), folder)
    return list(found.values())


def _checkpoint_run(folder: Path) -> Optional[Path]:
    """The training run folder holding the checkpoint an evaluation's ``summary.json`` names, if any (none when the
    file cannot be read: the evaluation's own section says why)."""
    try:
        checkpoints = recorded_paths(read_json(folder / "summary.json"), "checkpoint", folder)
    except ValueError:
        return None
    return next((c.parent for c in checkpoints if _enterable(c.parent) and is_training_run(c.parent)), None)


def _unfinished_evaluations(folder: Path) -> list[tuple[str, str]]:
    """(section kind, result file) of each evaluation whose results are in ``folder`` without the ``summary.json``
    its command writes last (per_image.csv: ``coseg evaluate``; neighbours.csv: ``coseg retrieval evaluate``)."""
    if (folder / "summary.json").is_file():
        return []
    return [(kind, name) for kind, name in (("Evaluation", "per_image.csv"), ("Retrieval evaluation", NEIGHBOURS))
            if (folder / name).is_file()]


def _no_summary(folder: Path, result: str) -> str:
    """Refuse the section of an evaluation stopped before writing its summary.json (:func:`_unfinished_evaluations`)."""
    raise ValueError(f"{printable(folder / 'summary.json')} is missing beside {result}: the evaluation was stopped "
                     "before its end (summary.json is written last) or is writing its results now; evaluate into "
                     "this folder again")


def build_report(folder: PathLike, output: Optional[PathLike] = None, per_group: int = 12, thumbnail: int = 160,
                 progress: bool = True) -> ReportResult:
    """Write the report of ``folder`` (see the module docstring) to ``output`` (default ``folder/report.html``),
    its plots and thumbnails (longer side ``thumbnail`` pixels; at most ``per_group`` images per group) to
    ``<output stem>_files/`` beside it. Raises ``ValueError`` when ``folder`` holds nothing to report."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{printable(root)}: not a folder")
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    if thumbnail < 1:
        raise ValueError(f"thumbnail must be >= 1 pixel, got {thumbnail}")
    page_path = Path(output) if output is not None else root / REPORT_NAME
    if len(os.fsencode(page_path.name)) > NAME_BYTES:
        raise ValueError(f"{printable(page_path.name)}: a file name of {len(os.fsencode(page_path.name))} bytes, "
                         f"longer than the {NAME_BYTES} a file name may have; choose a shorter name for the report "
                         "(`coseg report --output`)")
    if page_path.name in ("", "..") or page_path.is_dir():  # refused before its PNG folder is put in place
        raise _cannot_write(page_path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    files = files_folder(page_path)
    plan: list[tuple[str, Path, Callable[[str, Path], str]]] = []  # (kind, folder, make(prefix, PNG folder) -> HTML)
    runs_seen: set[Path] = set()
    left_out: list[Path] = []
    unshown: list[str] = []  # the sections' pictures not shown, for the ReportResult

    def add_run(run: Path) -> None:
        """The run's section and those of its sub-runs (ensemble members, a fine-tuning stage) with a log."""
        for folder in [run] + [sub for sub in _candidates(run, files, left_out)[1:] if (sub / "log.csv").is_file()]:
            if folder.resolve() not in runs_seen:
                runs_seen.add(folder.resolve())
                plan.append(("Training", folder, lambda prefix, pngs, f=folder: training_section(f, pngs, prefix)))

    for candidate in _candidates(root, files, left_out):
        if is_evaluation(candidate) or is_retrieval_evaluation(candidate):
            linked = _checkpoint_run(candidate)
            if linked is not None:
                add_run(linked)
        if is_training_run(candidate):
            add_run(candidate)
        if is_evaluation(candidate):
            plan.append(("Evaluation", candidate, lambda prefix, pngs, c=candidate: evaluation_section(
                c, pngs, prefix, per_group, thumbnail, progress, unshown)))
        if is_retrieval_evaluation(candidate):
            plan.append(("Retrieval evaluation", candidate, lambda prefix, pngs, c=candidate:
                         retrieval_section(c, pngs, prefix, thumbnail, progress, unshown)))
        if is_prediction(candidate):
            plan.append(("Predictions", candidate, lambda prefix, pngs, c=candidate:
                         prediction_section(c, pngs, prefix, per_group, thumbnail, progress, unshown)))
        for kind, result in _unfinished_evaluations(candidate):
            plan.append((kind, candidate, lambda prefix, pngs, c=candidate, r=result: _no_summary(c, r)))
    if not plan:
        raise ValueError(f"{printable(root)}: nothing to report here or in its sub-folders (expected a training run: "
                         "log.csv / config.yaml; an evaluation: summary.json + per_image.csv, or a retrieval one's "
                         "summary.json (+ neighbours.csv); or a `coseg predict` output: predict.json)"
                         f"{_left_out(left_out, root, '; folders ')}")
    _check_outside_data(files, [folder for _, folder, _ in plan])
    try:
        with _report_locks(page_path, files, "another `coseg report` is writing this report",
                           f"another `coseg report` is writing a report whose pictures go to {printable(files.name)} "
                           "too"):
            return _write(root, page_path, files, plan, left_out, unshown)
    except OSError as e:
        raise _cannot_write(page_path, e) from None


def _data_folders(folder: Path) -> list[Path]:
    """The data folders a result in ``folder`` was made from, as far as its files record them: a training run's
    ``config.yaml`` ``data`` (as the trainer read it), an evaluation's ``data`` and a prediction's ``input``."""
    found = []
    for name, key in (("summary.json", "data"), ("predict.json", "input")):
        if (folder / name).is_file():
            with contextlib.suppress(ValueError):  # an unreadable file: its section says so
                found += recorded_paths(read_json(folder / name), key, folder)
    with contextlib.suppress(OSError, yaml.YAMLError):
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        if isinstance(config, dict) and isinstance(config.get("data"), str):
            found.append(Path(config["data"]).expanduser())
    return [path for path in found if path.is_dir()]


def _check_outside_data(files: Path, folders: list[Path]) -> None:
    """Refuse (``ValueError``) a report whose pictures folder ``files`` lies inside the data folder of one of the
    reported ``folders`` (a run given ``--output`` inside its ``--data``): a later scan of the data would take the
    pictures for images of a group or class."""
    for folder in folders:
        for data in _data_folders(folder):
            if is_inside(files, data):
                raise ValueError(f"{printable(files)}: the report's pictures would go into the data folder "
                                 f"{printable(data)} of {printable(folder)}, where a later scan would take them for "
                                 "images; choose another place for the report (`coseg report --output`)")


def _write(root: Path, page_path: Path, files: Path, plan: list[tuple[str, Path, Callable[[str, Path], str]]],
           left_out: list[Path], unshown: list[str]) -> ReportResult:
    """Make the sections of ``plan`` and put the page and its pictures in place of the earlier report's; ``unshown``
    fills with why each picture the sections could not draw was not."""
    if page_path.is_file() and not is_report(page_path):
        raise ValueError(f"{printable(page_path)}: not a page `coseg report` wrote, which the report would replace; "
                         "choose another place for the report (`coseg report --output`)")
    if os.path.lexists(files) and not files.is_dir():
        raise ValueError(f"{printable(files)}: not a folder, yet the report's pictures go there; choose another place "
                         "for the report (`coseg report --output`)")
    names = [p.name for p in files.iterdir()] if files.is_dir() else []
    foreign = sorted(n for n in names if not (REPORT_FILE.fullmatch(n) or BROWSER_FILE.fullmatch(n)))
    if foreign:
        raise ValueError(f"{printable(files)} holds files no report wrote ({printable(', '.join(foreign[:3]))}"
                         f"{', ...' if foreign[3:] else ''}), which the report's pictures would replace; choose "
                         "another place for the report (`coseg report --output`)")
    sharing = sorted(p.name for p in page_path.parent.glob(glob.escape(page_path.stem) + "*")
                     if p.name != page_path.name and files_folder(p) == files and p.is_file() and is_report(p))
    if sharing:  # x.html and x.htm: one files folder, so the earlier page would show the new report's pictures
        raise ValueError(f"{printable(files)} holds the pictures of the report {printable(sharing[0])}, which this "
                         "report would replace; choose another name for it (`coseg report --output`)")
    staged = _staging_folder(files)
    try:
        page = Page(f"Report: {printable(root.resolve().name)}",
                    f"{MADE_BY} on {esc(time.strftime('%Y-%m-%d %H:%M'))} from "
                    f"<code>{esc(root.resolve())}</code>.{esc(_left_out(left_out, root, ' Folders ', '.'))}")
        result = ReportResult(page_path, files, left_out=left_out, unshown=unshown)
        headings = _headings([(kind, folder) for kind, folder, _ in plan], root)
        for n, (heading, (_, _, make)) in enumerate(zip(headings, plan), start=1):
            try:
                body = make(f"s{n}", staged)
            except (ValueError, OSError, KeyError) as e:
                reason = str(e).strip("'\"")
                result.problems.append((heading, reason))
                body = f"<p><strong>Not reported:</strong> {esc(reason)}</p>"
            page.add(heading, body)
            result.sections.append(heading)
        _publish(page, page_path, staged, files)
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    return result


def _staging_folder(files: Path) -> Path:
    """An empty folder named like ``files`` (so the page's links to it hold) in a new hidden folder beside it, where
    the new report's PNGs are written while the earlier report stays whole; the staging folders of reports that were
    killed (no clean-up ran) are removed first (a report running is not killed: it holds the lock of ``files``)."""
    mark = fitted_name(f".{files.name}", TEMPORARY_MARK, NAME_BYTES - 8)  # mkdtemp adds 8 characters
    for leftover in files.parent.glob(glob.escape(mark) + "*"):
        shutil.rmtree(leftover, ignore_errors=True)
    files.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=mark, dir=files.parent)) / files.name
    staged.mkdir()
    return staged


def _publish(page: Page, page_path: Path, staged: Path, files: Path) -> None:
    """Replace the earlier report by the new one: the page is written to a temporary file first, then the staged
    PNG folder takes the place of ``files`` (the earlier one goes into the staging folder, removed after) and the page
    is renamed over the earlier page."""
    with atomic_path(page_path) as temporary:
        temporary.write_text(page.render(), encoding="utf-8")
        if files.is_dir():
            files.rename(staged.with_name("earlier"))
        staged.rename(files)


def _cannot_write(page: Path, error: OSError) -> ValueError:
    return ValueError(f"{printable(page)}: cannot write the report there ({error.strerror or error}); choose another "
                      "place for it (`coseg report --output`)")


def _headings(sections: list[tuple[str, Path]], root: Path) -> list[str]:
    """The headings of the sections (kind, folder): ``<kind>: <folder's name>`` (:func:`_name`); sections whose
    headings would be the same (members of two linked ensembles, ``member0``) are named by as many of their folders'
    last path parts as tell them apart (``ens_a/member0``, ``ens_b/member0``), or else by their whole paths."""
    headings = [f"{kind}: {_name(folder, root)}" for kind, folder in sections]
    for whole in (False, True):
        for heading in dict.fromkeys(headings):  # in page order: the same headings on every run
            same = [n for n, h in enumerate(headings) if h == heading]
            if len(same) > 1:  # distinct folders (a folder has one section of each kind): some suffix tells them apart
                parts = [sections[n][1].resolve().parts for n in same]
                k = max(map(len, parts)) if whole else next(
                    k for k in range(1, max(map(len, parts)) + 1) if len({p[-k:] for p in parts}) == len(parts))
                for n, p in zip(same, parts):
                    headings[n] = f"{sections[n][0]}: {printable(Path(*p[-k:]))}"
    return headings


def _left_out(folders: list[Path], root: Path, before: str, after: str = "") -> str:
    """``before`` "left out, as they cannot be listed or entered: <their names>" ``after``; empty without
    ``folders``."""
    if not folders:
        return ""
    return f"{before}left out, as they cannot be listed or entered: {', '.join(_name(p, root) for p in folders)}{after}"


def _name(folder: Path, root: Path) -> str:
    """``folder`` relative to ``root``, or its own name (the root itself, or a linked run elsewhere)."""
    try:
        relative = folder.resolve().relative_to(root.resolve())
    except ValueError:
        relative = Path()
    return printable(relative if relative.parts else folder.resolve().name)
