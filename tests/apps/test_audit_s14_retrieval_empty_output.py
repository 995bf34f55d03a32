"""An empty --output of `coseg retrieval evaluate` or `export` (a script's unset variable, `--output "$OUT"`) is a
usage error naming the option, as the trainers' is: it wrote summary.json, or the seven files of an export, into the
current folder among whatever that held."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE
from tests.apps.test_audit_s12_cli_config import coseg


@pytest.mark.parametrize("command", ["evaluate", "export"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_output_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
                                           value: str) -> None:
    model = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    data = write_class_folders(tmp_path / "data", ["a", "b"])
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    where = ["--data", data, "--split", "all"] if command == "evaluate" else ["--input", data]
    code, output = coseg("retrieval", command, "--checkpoint", model, *where, "--output", value, "--quiet")
    assert code == 2 and "Invalid value for '--output': is empty (the current folder is '.')" in output, output
    assert not list((tmp_path / "here").iterdir())
