"""Per-epoch CSV log that survives interruptions: each write replaces the file atomically."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Union

from coseg.atomic import write_text_atomic


class CsvLog:
    """Rows of per-epoch values; columns are the union of all keys seen, in first-seen order."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def load(self, up_to_epoch: int) -> None:
        """Read an existing log (on resume), keeping rows with ``epoch <= up_to_epoch``; the file is rewritten
        without the others (epochs a killed run logged but did not checkpoint), even if no row is appended. A
        byte-order mark (a spreadsheet's "CSV UTF-8") is not taken as part of the first column's name, nor is a row
        of empty cells a row; a file that is not such a log (no ``epoch`` column, e.g. re-saved with semicolons, or
        not UTF-8) or has a row whose epoch is not a whole number is a ValueError naming it, left as it was."""
        if not self.path.is_file():
            return
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{self.path}: cannot read this log ({e}); restore the file the run wrote, or move it "
                             "away to start a new log") from None
        if reader.fieldnames is not None and "epoch" not in reader.fieldnames:  # rewriting it would drop every row
            raise ValueError(f"{self.path}: not a log of this toolkit: no 'epoch' column among "
                             f"{', '.join(reader.fieldnames)[:80]!r} (re-saved with another separator?); restore the "
                             "file the run wrote, or move it away to start a new log")
        rows = [r for r in rows if any(v.strip() for v in r.values() if isinstance(v, str))]  # a spreadsheet's ",,,"
        odd = next((r["epoch"] for r in rows if not (r["epoch"] or "").strip().isdecimal()), None)
        if odd is not None:  # rewriting it would drop the row
            raise ValueError(f"{self.path}: a row's epoch {odd!r} is not a whole number (edited by hand?); restore the "
                             "file the run wrote, or correct that row")
        self.rows = [r for r in rows if int(r["epoch"]) <= up_to_epoch]
        if len(self.rows) < len(rows):
            self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns.extend(k for k in r if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())
