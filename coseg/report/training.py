"""The training part of a report: curves from a run's ``log.csv`` and the ``config.yaml`` it was trained with.

Both trainers log through the shared engine: one row per epoch with ``epoch``, the learning rates (``lr``: the
``--lr`` one; ``lr_<group>``: the encoder's, backbone's or loss's), ``train_<term>`` (mean loss terms), ``seconds``,
``images_per_s`` and ``val_<metric>`` (co-segmentation: P, J; retrieval: R@1, MAP@R). The engine records in the
run's ``last.safetensors`` whether the run finished; an unfinished one is said so, and so is a staged retrieval run
whose fine-tuning stage has not started."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import yaml

from coseg.models.checkpoint import checkpoint_metadata
from coseg.report.html import esc, esc_lines, link, table
from coseg.report.files import as_float, read_csv
from coseg.report.plots import line_plot

# The metric each trainer selects its best checkpoint by (coseg: J; retrieval: MAP@R), in order of preference.
SELECTION_COLUMNS = ("val_J", "val_MAP@R", "val_R@1")
FINETUNE_DIR = "finetune"
"""The folder of a staged retrieval run's fine-tuning stage, inside the run's folder."""


def is_training_run(folder: Path) -> bool:
    return (folder / "log.csv").is_file() or (folder / "config.yaml").is_file()


def read_log(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a ``log.csv``; rows without an integer epoch of at most 15 digits (which a float, and so
    the plot's axis, holds exactly), or cut short, are dropped; a file without an ``epoch`` column (re-saved with
    another separator) is a ``ValueError`` naming it."""
    columns, rows = read_csv(path, ("epoch",))
    return columns, [r for r in rows if (epoch := (r.get("epoch") or "").strip()).isdecimal() and len(epoch) <= 15]


def best_epoch(columns: list[str], rows: list[dict[str, str]]) -> Optional[tuple[int, str]]:
    """(epoch, column) of the highest value of the selection metric, or None when no column has a value."""
    for column in SELECTION_COLUMNS:
        if column in columns:
            scored = [(as_float(r[column]), int(r["epoch"])) for r in rows]
            scored = [(v, e) for v, e in scored if not math.isnan(v)]
            if scored:
                return max(scored, key=lambda ve: (ve[0], -ve[1]))[1], column
    return None


def training_section(run: Path, files: Path, prefix: str) -> str:
    """HTML for the training run in ``run``: loss and validation curves (PNGs written to ``files`` as
    ``<prefix>_loss.png`` and ``<prefix>_val.png``), the epoch table and the config."""
    parts = [f'<p class="note">Run folder: <code>{esc(run.resolve())}</code></p>']
    end = run_end_note(run)
    if end:
        parts.append(end)
    log = run / "log.csv"
    if log.is_file():
        columns, rows = read_log(log)
        if rows:
            epochs = [int(r["epoch"]) for r in rows]
            saved = last_saved_epoch(run)
            unsaved = [e for e in epochs if saved is not None and e > saved]
            if unsaved:
                parts.append(f"<p><b>Not saved:</b> log.csv's epoch(s) {esc(', '.join(map(str, unsaved)))} came after "
                             f"the last model file's (epoch {saved}): their models were not saved (the run was stopped "
                             "after logging them, or is saving them now), so none of them is marked best.</p>")
            best = best_epoch(columns, [r for r, e in zip(rows, epochs) if e not in unsaved])
            mark = (best[0], f"best {best[1][4:]} (epoch {best[0]})") if best else None
            losses = {c[6:]: [as_float(r[c]) for r in rows] for c in columns if c.startswith("train_")}
            metrics = {c[4:]: [as_float(r[c]) for r in rows] for c in columns if c.startswith("val_")}
            for name, series, title, unit in (("loss", losses, "training loss terms (epoch means)", "loss"),
                                              ("val", metrics, "validation metrics", "percent")):
                if series:
                    plot = f"{prefix}_{name}.png"
                    line_plot(files / plot, epochs, series, title, "epoch", unit, mark=mark)
                    parts.append(f'<img class="plot" src="{link(files, plot)}" alt="{esc(title)}">')
            parts.append(f"<h3>Epochs ({len(rows)})</h3>")
            parts.append(table(columns, [[_number(r.get(c, "")) for c in columns] for r in rows],
                               number_format=epoch_number))
        else:
            parts.append("<p>log.csv holds no finished epoch yet.</p>")
    config = run / "config.yaml"
    if config.is_file():
        parts.append(f'<details><summary><b>Config</b> (config.yaml, click to show)</summary><pre class="config">'
                     f'{esc_lines(config.read_text(encoding="utf-8", errors="replace"))}</pre></details>')
    return "\n".join(parts)


def last_saved_epoch(run: Path) -> Optional[int]:
    """The epoch of the model in ``run/last.safetensors`` (its metadata), which the engine writes after the epoch's
    log.csv row and best model; None when it is absent, unreadable or records none (an ensemble's, an older run's)."""
    try:
        epoch = checkpoint_metadata(run / "last.safetensors").get("epoch", "")
    except (OSError, ValueError):
        return None
    return int(epoch) if epoch.isdecimal() else None


def run_end_note(run: Path) -> Optional[str]:
    """HTML saying that the run in ``run`` is unfinished (from its ``last.safetensors``: the engine's ``finished``
    entry; or its fine-tuning stage has not started, :func:`fine_tuning_pending`) or that its ``last.safetensors``
    cannot be read; None when it finished or did not record it (a run of an older version)."""
    last = run / "last.safetensors"
    resume = "training it again with --resume (and its config.yaml) continues it"
    if not last.is_file():
        if (run / "config.yaml").is_file():
            return (f"<p><b>Unfinished:</b> no model file (last.safetensors) yet: it is still training or was "
                    f"stopped; {resume}.</p>")
        return None
    try:
        metadata = checkpoint_metadata(last)
    except ValueError as err:
        return f"<p><b>Last model:</b> {esc(err)}.</p>"
    if metadata.get("finished") == "no":
        stopped = "stopped (or is still training, or is being resumed) before"
        if "members" in metadata:  # an ensemble's, of its members' last models
            return (f"<p><b>Unfinished:</b> its members have not all reached their last epoch (see their sections): "
                    f"the run was {stopped} its end; {resume}.</p>")
        return (f"<p><b>Unfinished:</b> its last model is of epoch {esc(metadata.get('epoch', '?'))}, and the run was "
                f"{stopped} its last epoch; {resume}.</p>")
    if fine_tuning_pending(run):
        return (f"<p><b>Unfinished:</b> its head stage finished, but its fine-tuning stage ({FINETUNE_DIR}/) has not "
                f"started yet (no model file of it: it is still training its first epoch or was stopped before its "
                f"end); {resume}.</p>")
    return None


def fine_tuning_pending(run: Path) -> bool:
    """Whether the run in ``run`` is a staged retrieval run whose ``config.yaml`` asks for a fine-tuning stage
    (``mode: staged``, ``finetune_epochs`` > 0) that holds no model file (``finetune/last.safetensors``) yet: killed
    after its head stage, before the fine-tuning stage's first epoch ended. False when config.yaml cannot be read
    (the report shows it as it is)."""
    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    if not isinstance(config, dict) or config.get("mode") != "staged":
        return False
    epochs = config.get("finetune_epochs")
    return isinstance(epochs, int) and epochs > 0 and not (run / FINETUNE_DIR / "last.safetensors").is_file()


def epoch_number(value: float) -> str:
    """A log value as the epoch table shows it: 4 significant digits (``0.8532``, ``88.21``, ``1e-05``), whole
    numbers from 10,000 to 10¹⁵ (``12346`` seconds, not ``1.235e+04``; ``1e+20`` stays)."""
    shown = f"{value:.4g}"
    return f"{value:.0f}" if "e+" in shown and abs(value) < 1e15 else shown


def _number(text: str):  # noqa: ANN202 - int, float or the text itself
    """A log cell as int or float when it is one (for numeric sorting; blank and ``nan`` = NaN, shown – and sorted
    last), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text if text.strip() else math.nan
