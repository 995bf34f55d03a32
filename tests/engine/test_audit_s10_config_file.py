"""A config file's YAML syntax error says where in that file, with the line it points at."""
from __future__ import annotations

import pytest

from coseg.engine import ConfigError, read_config_file
from tests.engine.test_config import Toy


@pytest.mark.parametrize("text, line, shown", [
    ("lr: 0.1\n\tepochs: 2\n", 2, "\tepochs: 2"),  # a tab indents
    ("epochs: 1\nepochs: 2\n", 2, "epochs: 2"),  # a key given twice: the loader of this module's own
])
def test_a_syntax_error_names_the_file_and_the_line(tmp_path, text, line, shown):
    """The position was told as in "<unicode string>", line 2: the file is the one the user gave."""
    path = tmp_path / "my run ü.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_config_file(Toy, path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML (") and f'in "{path}", line {line}, column 1:' in message
    assert shown in message and "<unicode string>" not in message
