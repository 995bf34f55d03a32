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
        """Read an existing log (on resume), keeping rows with ``epoch <= up_to_epoch``."""
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            self.rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= up_to_epoch]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        columns: list[str] = []
        for r in self.rows:
            columns.extend(k for k in r if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())
