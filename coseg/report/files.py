"""The result files reports are built from, and how to read them: names, columns and CSV cells."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Optional, Sequence
from urllib.parse import quote, unquote_to_bytes

from coseg.atomic import PathLike, file_digest
from coseg.data.io import printable

PREDICTIONS = "predictions"  # evaluate --report: predicted masks and their index.csv in this sub-folder
PREDICTION_INDEX = "index.csv"
# the columns written; each <column>_relative holds the path of the column before it relative to the file's folder
# (:func:`path_cells`): files written before those columns lack them, so reports do not require them
PREDICTION_INDEX_COLUMNS = ("group", "image", "image_path", "image_path_relative", "mask_path", "mask_path_relative",
                            "any_nonzero", "prediction")
# printable ASCII but "%": kept as they are in a path cell; everything else (non-ASCII, bytes that are not UTF-8)
# is percent-encoded, so the cell is UTF-8 and gives back the exact path
_PATH_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%" and not chr(c).isalnum())


def path_cell(path: os.PathLike | str) -> str:
    """``path`` as a CSV cell that :func:`cell_path` turns back into the same path, whatever its bytes."""
    return quote(os.fsencode(path), safe=_PATH_SAFE)


def cell_path(cell: str) -> Path:
    """The path a :func:`path_cell` cell holds."""
    return Path(os.fsdecode(unquote_to_bytes(cell)))


def path_cells(path: PathLike, folder: PathLike) -> tuple[str, str]:
    """``path`` as the two cells of a CSV file to be written into ``folder``: the absolute path, and the path relative
    to ``folder`` (blank when there is none: another drive on Windows), which finds it again when both were moved
    together; both :func:`path_cell`, of resolved paths (so the relative path's ``..`` hold past symbolic links)."""
    absolute = Path(path).resolve()
    return path_cell(absolute), _relative_cell(absolute, Path(folder).resolve()) or ""


def _relative_cell(absolute: PathLike, folder: PathLike) -> Optional[str]:
    """The :func:`path_cell` of ``absolute`` relative to the absolute ``folder``; None on another drive (Windows)."""
    try:
        return path_cell(os.path.relpath(absolute, folder))
    except ValueError:
        return None


def row_path(row: Mapping[str, str], column: str, folder: Path) -> Path:
    """Where the path :func:`path_cells` wrote in ``column`` and ``<column>_relative`` of a CSV row, in a file of
    ``folder``, is now: the absolute path when it exists, else the relative one when that exists (moved together with
    ``folder``), else the absolute path (its reading error names it). Older files have the absolute path only."""
    absolute = cell_path(row[column])
    relative = row.get(f"{column}_relative")
    candidates = [absolute, *([folder / cell_path(relative)] if relative else [])]
    return next((p for p in candidates if os.path.exists(p)), absolute)


def required_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The ``columns`` of a result file that a report needs: all but the optional ``<column>_relative`` ones."""
    return tuple(c for c in columns if not c.endswith("_relative"))


def record_path(record: MutableMapping[str, Any], key: str, path: PathLike, folder: PathLike) -> None:
    """Record ``path`` in ``record`` (a result file to be written into ``folder``): ``key`` as the absolute path to
    read (``printable``), ``<key>_relative`` relative to ``folder`` (a :func:`path_cell`), which finds it again when
    both were moved together or the path is not UTF-8 (:func:`recorded_paths`)."""
    absolute = os.path.abspath(path)
    record[key] = printable(absolute)
    relative = _relative_cell(absolute, os.path.abspath(folder))
    if relative is None:
        record.pop(f"{key}_relative", None)
    else:
        record[f"{key}_relative"] = relative


def record_model_file(record: MutableMapping[str, Any], path: PathLike, folder: PathLike,
                      digest: Optional[str] = None) -> None:
    """Record the model file ``path`` in ``record`` (a result file to be written into ``folder``) as
    :func:`record_path` does under "checkpoint", with its SHA-256 (``digest`` when already computed) under
    "checkpoint_sha256", which tells later whether the file still holds the model of these results
    (:func:`model_file_changed`)."""
    record_path(record, "checkpoint", path, folder)
    record["checkpoint_sha256"] = file_digest(path) if digest is None else digest


def model_file_changed(record: Mapping[str, Any], folder: Path) -> Optional[Path]:
    """The model file a result file of ``folder`` recorded (:func:`record_model_file`) when it now holds another
    model than the one of the results (a resumed or new training wrote over it); None when it holds the same, is
    gone, or no digest was recorded (results of earlier versions)."""
    digest = record.get("checkpoint_sha256")
    if not isinstance(digest, str):
        return None
    for path in recorded_paths(record, "checkpoint", folder):
        try:
            return None if file_digest(path) == digest else path
        except OSError:
            continue  # not there: try where it was relative to the folder
    return None


def check_report_outside(output: PathLike, data: PathLike, taken_for: str = "data") -> None:
    """Refuse (``ConfigError``: a usage error) a report (``--report``) into ``output`` when it lies inside the data
    folder ``data``: a later scan of the data would take the report's images for ``taken_for``."""
    from coseg.engine.config import ConfigError
    from coseg.predict import is_inside  # imported here: coseg.predict imports this module

    if is_inside(Path(output), Path(data)):
        raise ConfigError(f"--report writes images into --output {printable(output)}, which is inside the data folder "
                          f"{printable(data)}: a later scan would take them for {taken_for}; choose an output folder "
                          "elsewhere")


def recorded_paths(record: Mapping[str, Any], key: str, folder: Path) -> list[Path]:
    """Where the path :func:`record_path` recorded under ``key`` in a result file of ``folder`` may be now, to try in
    this order: the absolute path, then the relative one (moved together with ``folder``); none when not recorded."""
    candidates = []
    if isinstance(record.get(key), str):
        candidates.append(Path(record[key]))
    if isinstance(record.get(f"{key}_relative"), str):
        candidates.append(folder / cell_path(record[f"{key}_relative"]))
    return candidates


PREDICT_RECORD = "predict.json"  # predict --report: where the inputs and the checkpoint were
NEIGHBOURS = "neighbours.csv"  # retrieval evaluate --report: the shown queries' nearest neighbours
# as written; query_relative and path_relative: as the *_relative columns of PREDICTION_INDEX_COLUMNS
NEIGHBOUR_COLUMNS = ("order", "query", "query_relative", "query_class", "rank", "path", "path_relative", "class",
                     "distance", "correct")
RECALL_CURVE = "recall_at_k.csv"  # retrieval evaluate --report: R@K (percent) for K = 1, 2, 3, ...


def as_float(text: str) -> float:
    """A CSV cell as a float; blank or unparsable cells become NaN."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def int_cell(row: Mapping[str, str], column: str, path: Path) -> int:
    """The ``column`` cell of a row of the CSV file ``path`` as an int; a clear ``ValueError`` naming the file
    otherwise."""
    try:
        return int(row[column])
    except ValueError:
        raise ValueError(f"{printable(path)}: {column} '{printable(row[column][:40])}' is not an integer") from None


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a clear ``ValueError`` naming the file when it cannot be read."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"), parse_int=_json_int)
    except (OSError, ValueError) as e:
        raise ValueError(f"{printable(path)}: cannot read it ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{printable(path)}: expected a JSON object")
    return value


def _json_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # beyond Python's limit on the digits of a conversion (4300 by default)
        raise ValueError(f"a number of {len(text.lstrip('-'))} digits, too long to read") from None


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def json_value(value: Any, kind: type, path: Path, name: str) -> Any:
    """``value``, the entry ``name`` of the JSON file ``path``, when it is a ``kind`` (dict or list; null or absent:
    an empty one), else a clear ``ValueError`` naming the file and the entry."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        expected = _JSON_TYPES[kind]
        raise ValueError(f"{printable(path)}: {name} is a JSON {_JSON_TYPES.get(type(value), 'value')}, not "
                         f"{'an' if expected[0] in 'aeiou' else 'a'} {expected}")
    return value


def json_number(value: Any, path: Path, name: str) -> float:
    """``value``, the entry ``name`` of the JSON file ``path``, as a float (null or absent: NaN), else a clear
    ``ValueError`` naming the file and the entry (true and false are no numbers, nor is an integer beyond the float
    range)."""
    if value is None:
        return math.nan
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
        except OverflowError:
            raise ValueError(f"{printable(path)}: {name} is too large a number ({len(str(abs(value)))} digits)"
                             ) from None
    raise ValueError(f"{printable(path)}: {name} is not a number ({printable(repr(value)[:60])})")


def json_count(value: Any, path: Path, name: str) -> Optional[int]:
    """``value``, the entry ``name`` of the JSON file ``path``, when it is a count (an integer >= 0; null or absent:
    None), else a clear ``ValueError`` naming the file and the entry."""
    if value is None or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{printable(path)}: {name} is not a count ({printable(repr(value)[:60])})")


def read_csv(path: Path, required: Sequence[str] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows of a CSV file with a header (after the byte-order mark a spreadsheet may save); rows cut short
    (a truncated last line) are dropped; a clear ``ValueError`` naming the file when it is not UTF-8, not CSV or lacks
    one of the ``required`` columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns, rows = list(reader.fieldnames or []), [r for r in reader if None not in r.values()]
    except (UnicodeDecodeError, csv.Error) as e:  # csv.Error: e.g. a cell beyond the field size limit
        raise ValueError(f"{printable(path)}: cannot read it ({e})") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"{printable(path)}: missing column(s) {', '.join(missing)}")
    return columns, rows
