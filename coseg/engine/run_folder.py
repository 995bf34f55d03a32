"""A trainer's run folder (``--output``): a run already there is not replaced unless asked for (``overwrite``),
and ``--resume`` continues it only with the options it was trained with (but for those that say how long and
where it goes on)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from coseg.atomic import remove_temporaries
from coseg.data.io import printable
from coseg.engine.checkpoint import check_best_file, check_world_size, load_training_state
from coseg.engine.config import config_to_dict, load_config, save_config

RESUMABLE = frozenset({"output", "overwrite", "epochs", "minutes", "device", "amp", "workers", "cache_dir", "quiet"})
"""The options ``--resume`` may change: how long and where the run goes on, not what it trains."""

RUN_FILES = ("last.pt", "log.csv", "best.safetensors", "last.safetensors")
"""The checkpoints and the log the engine writes into a run's folder."""

WORDS = {"weights": frozenset({"imagenet", "none", "None"})}
"""Values of path options that name no file (the encoder's ImageNet weights, none), even where one of that name is."""


@dataclass(frozen=True)
class RunFolder:
    """What a trainer's run folder holds besides its own :data:`RUN_FILES`, and how its options compare.

    ``subruns`` is the glob of the folders of its sub-runs (ensemble members, a second stage), ``paths`` the
    options that may name a file or folder (``data/`` and ``./data`` are the same folder; ``weights`` may also be
    ``imagenet``), ``resumable`` the options ``--resume`` may change, ``extra_files`` the files the trainer writes
    beside :data:`RUN_FILES` in each of them (found and cleared with those), ``remove_report`` what removes a report
    written into the run folder (cleared with the run: it would show the replaced run's curves)."""

    subruns: str
    paths: frozenset[str]
    resumable: frozenset[str] = RESUMABLE
    extra_files: tuple[str, ...] = ()
    remove_report: Optional[Callable[[Path], None]] = None

    @property
    def run_files(self) -> tuple[str, ...]:
        return (*RUN_FILES, *self.extra_files)

    def files(self, output: Path) -> list[Path]:
        """The checkpoints and logs of a run (or of its sub-runs) already in ``output``."""
        folders = [output, *sorted(output.glob(self.subruns))]
        return [folder / name for folder in folders for name in self.run_files if (folder / name).is_file()]

    def clear(self, output: Path) -> None:
        """Remove the checkpoints and logs of the run in ``output`` and of its sub-runs (a run replaced with
        ``overwrite``), and the sub-runs' configs, so that neither a later resume nor a report takes them up, the
        run's report (:attr:`remove_report`), and the temporary files of the writes a killed run left there; a
        sub-run folder left empty goes too."""
        remove_temporaries(output)
        if self.remove_report is not None:
            self.remove_report(output)
        for name in self.run_files:
            (output / name).unlink(missing_ok=True)
        for folder in output.glob(self.subruns):
            remove_temporaries(folder)
            for name in (*self.run_files, "config.yaml"):
                (folder / name).unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def save_config(self, cfg: Any, path: Path) -> None:
        """Write ``cfg`` as the run's ``config.yaml`` with each of its :attr:`paths` options that names an existing
        file or folder made absolute, so that the file works from any folder (``--config RUN/config.yaml
        --resume``); other values (:data:`WORDS` such as ``imagenet``, also with a folder of that name in the current
        folder, a cache folder not made yet) as given."""
        absolute = {k: os.path.abspath(v) for k in self.paths
                    if (v := getattr(cfg, k)) and v not in WORDS.get(k, ()) and os.path.exists(v)}
        save_config(replace(cfg, **absolute), path)

    def check(self, cfg: Any, resume: bool, world_size: int = 1) -> None:
        """Refuse to lose a run already in ``cfg.output``: a new run there needs ``cfg.overwrite``, and ``resume``
        needs the options saved in its ``config.yaml`` (read as ``cfg``'s class), but for the resumable ones, and
        training states (``last.pt``, its own and its sub-runs') that load, were saved by ``world_size`` processes
        and have their best model file (:func:`~coseg.engine.checkpoint.check_best_file`), checked before the trainer
        writes.
        ``resume`` with ``cfg.overwrite`` is refused (one would be ignored)."""
        if resume and cfg.overwrite:
            raise ValueError("--resume continues the run in --output and --overwrite replaces it: give one of them")
        output = Path(cfg.output)
        saved = output / "config.yaml"
        if resume and not saved.is_file():
            raise ValueError(f"{printable(output)}: nothing to resume (no config.yaml of a run there); train without "
                             "--resume, or give the run's own --output")
        if resume:
            before = load_config(type(cfg), saved)
            changed = [f"{k} {getattr(before, k)!r} → {getattr(cfg, k)!r}" for k in config_to_dict(cfg)
                       if k not in self.resumable and self._value(before, k) != self._value(cfg, k)]
            if changed:
                raise ValueError(f"{printable(saved)}: --resume with options the run was not trained with: "
                                 f"{'; '.join(changed)}. Resume with its own options (--config {printable(saved)}), "
                                 f"or train a new run in another --output")
            for state in self.files(output):
                if state.name == "last.pt":
                    # a damaged one, one of another number of processes, or one whose best model file is lost, is
                    # refused before config.yaml is rewritten (an ensemble's or staged run's before any sub-run trains)
                    training = load_training_state(state)
                    check_world_size(state, training, world_size)
                    check_best_file(state, training)
        elif not resume and not cfg.overwrite:
            found = self.files(output)
            if found:
                names = ", ".join(p.relative_to(output).as_posix() for p in found[:3]) + (", ..." if found[3:] else "")
                raise ValueError(f"{printable(output)} already holds a run ({printable(names)}); --resume continues "
                                 f"it, --overwrite replaces it, or choose another --output")

    def _value(self, cfg: Any, key: str) -> Any:
        """``cfg.key``, path options as resolved paths (``data`` and ``/abs/to/data`` are one folder)."""
        value = getattr(cfg, key)
        return Path(value).resolve() if key in self.paths and value else value


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` called on the first call only (a run's start, which the first of its stages or members that trains
    makes)."""
    called = False

    def call() -> None:
        nonlocal called
        if not called:
            called = True
            fn()

    return call
