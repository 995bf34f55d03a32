"""coseg.engine.load_config on a config class of its own: a bad config file or value is one ConfigError naming the
file and the key, never a traceback from inside the loader."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from coseg.engine import ConfigError, load_config, read_config_file


@dataclass
class Toy:
    epochs: int = 1
    lr: float = 0.1
    minutes: Optional[float] = None


@pytest.mark.parametrize("text, message", [
    ("1: 2\nepochs: 3\n", r"c.yaml: unknown key\(s\) 1; valid keys: epochs, lr, minutes"),
    ("null: 2\ntrue: 3\nfoo: 4\n", r"c.yaml: unknown key\(s\) None, True, foo;"),
    ("epochs: .inf\n", r"c.yaml: 'epochs' must be int, got inf"),
    ("lr: .nan\n", r"c.yaml: 'lr' must be a finite number, got nan"),
    ("minutes: -.inf\n", r"c.yaml: 'minutes' must be a finite number, got -inf"),
])
def test_keys_and_values_yaml_reads_oddly_are_named(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Toy, path)


@dataclass
class Named:
    data: str = ""
    val_groups: list[str] = field(default_factory=list)
    weights: Optional[str] = "imagenet"
    image_size: int = 224


def test_names_in_a_config_file_are_read_as_written(tmp_path):
    path = tmp_path / "c.yaml"  # YAML alone reads 012 as the octal 10, 1.10 as 1.1, 2024-01-01 as a date, no as False
    path.write_text("data: 2024-01-01\nval_groups: [012, 1.10, no]\nweights: null\nimage_size: 64\n")
    assert load_config(Named, path) == Named("2024-01-01", ["012", "1.10", "no"], None, 64)
    assert read_config_file(Named, path) == {"data": "2024-01-01", "val_groups": ["012", "1.10", "no"],
                                             "weights": None, "image_size": 64}  # as the benchmarks read --config
    path.write_text("val_groups: 012, 025\n")
    assert load_config(Named, path).val_groups == ["012", "025"]


def test_a_key_spelt_as_its_flag_or_in_another_case_is_told_its_spelling(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("image-size: 64\nData: x\nfoo: 1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key\(s\) Data \(the key is data\), foo, image-size "
                                          r"\(the key is image_size\); valid keys: data, image_size, val_groups"):
        load_config(Named, path)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"epochs: 2\nlr: 0.1 # caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not a text file in UTF-8 \(byte 23: invalid continuation byte\)"):
        load_config(Toy, path)


def test_a_non_finite_override_is_refused_like_a_file_value():
    with pytest.raises(ConfigError, match=r"command line: 'minutes' must be a finite number, got nan"):
        load_config(Toy, None, {"minutes": float("nan")})  # e.g. --minutes nan: no budget would be kept


def test_a_bad_override_is_not_blamed_on_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 2\nlr: 0.5\n")
    with pytest.raises(ConfigError, match=r"^command line: 'lr' must be a finite number, got nan$"):
        load_config(Toy, path, {"lr": float("nan")})  # --config c.yaml --lr nan: the file is fine
    path.write_text("epochs: many\nlr: 0.5\n")
    with pytest.raises(ConfigError, match=r"c.yaml: 'epochs' must be int, got 'many'"):
        load_config(Toy, path, {"lr": 0.1})
    assert load_config(Toy, path, {"epochs": 3}) == Toy(epochs=3, lr=0.5)  # the command line's value replaces it


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys without a word: `data: a` above `data: b` trained on b."""
    path = tmp_path / "c.yaml"
    path.write_text("data: first\nepochs: 2\ndata: second\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML: key 'data' given twice \(lines 1 and 3\)"):
        read_config_file(Named, path)
    path.write_text("a: &a {epochs: 2}\nb:\n  <<: *a\n  epochs: 3\n")  # a merge's keys may still be overridden
    assert read_config_file(Named, path) == {"a": {"epochs": 2}, "b": {"epochs": 3}}
