"""A config file's YAML error is told in one line, naming the file, what is wrong and where (line, column): PyYAML's
message spread over five lines and placed the error in "<unicode string>"."""
from __future__ import annotations

import pytest

from coseg.engine import ConfigError, read_config_file
from tests.engine.test_config import Toy


@pytest.mark.parametrize("text, problem", [
    ("lr: 0.1\n\tepochs: 2\n", "found character '\\t' that cannot start any token (line 2, column 1)"),
    ("epochs: 1\nepochs: 2\n", "key 'epochs' given twice (lines 1 and 2) (line 2, column 1)"),
    ("lr: [0.1\n", "while parsing a flow sequence; expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
    ('lr: !!python/object/apply:os.system ["echo x"]\n',
     "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system' (line 1, "
     "column 5)"),
])
def test_a_yaml_error_names_the_file_the_problem_and_where_in_one_line(tmp_path, text, problem):
    path = tmp_path / "my run ü.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_config_file(Toy, path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML: ") and message.endswith(problem) and "\n" not in message


def test_a_list_key_left_without_a_value_gives_no_items(tmp_path):
    """`train_groups:` with nothing after it was refused: "'train_groups' must be a list, got None"."""
    from coseg.config import CosegTrainConfig
    from coseg.engine import load_config

    path = tmp_path / "run.yaml"
    path.write_text("data: somewhere\ntrain_groups:\nval_groups: []\ninput_mean:\n", encoding="utf-8")
    cfg = load_config(CosegTrainConfig, path)
    assert cfg.train_groups == [] and cfg.val_groups == [] and cfg.input_mean == []
