"""Audit of the train options' source: lines within 120 columns, their help strings (wrapped by implicit
concatenation) still whole sentences in ``coseg train --help``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.config import CosegTrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("source", ["coseg/config.py", "apps/cli.py"])
def test_no_line_is_longer_than_120_columns(source):
    long = [n for n, line in enumerate((ROOT / source).read_text(encoding="utf-8").splitlines(), 1) if len(line) > 120]
    assert long == []


def test_train_help_shows_every_option_help_whole():
    shown = " ".join(CliRunner().invoke(main, ["train", "--help"], terminal_width=100_000).output.split())
    for field in dataclasses.fields(CosegTrainConfig):
        text = field.metadata["help"]
        assert "  " not in text and not text.startswith(" ") and not text.endswith(" "), field.name
        assert " ".join(text.split()) in shown, field.name
