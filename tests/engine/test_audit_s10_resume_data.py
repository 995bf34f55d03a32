"""What a resume takes from the run folder: a trainer describing the run otherwise than its checkpoint does (groups
added to the data set since, so that a resume would carve other validation groups) is refused before anything is
written, and a log.csv saved again by a spreadsheet keeps its rows."""
from __future__ import annotations

import csv
import hashlib

import pytest

from coseg.engine import CheckpointError
from coseg.models.checkpoint import seen_metadata
from tests.engine.test_engine import make_engine
from tests.engine.toy import ToyTask


def digests(run) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}


def test_a_resume_on_other_groups_is_refused_naming_them(tmp_path):
    """The validation groups were carved again from a grown data set: a former validation group was trained on and
    the best epoch chosen on other groups, without a word."""
    engine, _ = make_engine(tmp_path, epochs=1, metadata=seen_metadata(["a", "b"], ["c"]))
    task = ToyTask()
    engine.fit(task, task.loader())
    before = digests(tmp_path)

    engine, _ = make_engine(tmp_path, epochs=2, metadata=seen_metadata(["a", "b", "c"], ["d", "e"]))
    with pytest.raises(CheckpointError) as info:
        engine.fit(task, task.loader(), resume=True)
    message = str(info.value)
    assert f"{tmp_path / 'last.pt'}: the run's data changed since it was trained" in message
    assert "trained_on: c added; validated_on: d, e added; c gone" in message
    assert "resume it with the data it was trained with" in message
    assert digests(tmp_path) == before

    engine, _ = make_engine(tmp_path, epochs=2, metadata=seen_metadata(["b", "a"], ["c"]))  # the same groups
    assert engine.fit(task, task.loader(), resume=True).epochs_run == 2


def test_a_log_saved_by_a_spreadsheet_keeps_its_rows_on_resume(tmp_path):
    """A byte-order mark before the header (a spreadsheet's "CSV UTF-8", with its CRLF line ends) made the first
    column '\ufeffepoch': every row was taken for one without an epoch and the log's history silently dropped."""
    engine, _ = make_engine(tmp_path, epochs=2)
    task = ToyTask()
    engine.fit(task, task.loader())
    log = tmp_path / "log.csv"
    log.write_bytes(b"\xef\xbb\xbf" + log.read_bytes().replace(b"\n", b"\r\n"))
    engine, _ = make_engine(tmp_path, epochs=3)
    engine.fit(task, task.loader(), resume=True)
    with open(log, newline="", encoding="utf-8") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2", "3"]
