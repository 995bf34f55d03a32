"""apps.options: one click option per config field; yes/no fields (also unset-able ones) are --x/--no-x flags."""
from __future__ import annotations

import dataclasses
from typing import Optional

import click
from click.testing import CliRunner

from apps.options import config_options, overrides


@dataclasses.dataclass
class Toy:
    steps: int = 3
    sharp: bool = False
    aligned: Optional[bool] = None  # unset: the component chooses


def given(*args: str) -> dict:
    seen = {}

    @click.command()
    @config_options(Toy)
    def cmd(**params):
        seen.update(overrides(params, Toy))

    result = CliRunner().invoke(cmd, list(args))
    assert result.exit_code == 0, result.output
    return seen


def test_yes_no_fields_are_flags_and_unset_when_not_given():
    assert given() == {}
    assert given("--steps", "5", "--sharp") == {"steps": 5, "sharp": True}
    assert given("--no-aligned") == {"aligned": False}
    assert given("--aligned", "--no-sharp") == {"aligned": True, "sharp": False}
