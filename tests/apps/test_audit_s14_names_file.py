"""`--train-classes @FILE` (and every option taking a list of group or class names): the names of FILE, one a line,
so that a class folder whose name holds a comma can be named on the command line; `a,b` is split as before."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE
from tests.apps.test_audit_s12_cli_config import captured_config, coseg

OPTIONS = [(["train"], "coseg.train", "--train-groups", "train_groups"),
           (["train"], "coseg.train", "--val-groups", "val_groups"),
           (["retrieval", "train"], "apps.retrieval.train", "--train-classes", "train_classes"),
           (["retrieval", "train"], "apps.retrieval.train", "--val-classes", "val_classes")]


@pytest.mark.parametrize("command, module, option, key", OPTIONS)
def test_a_names_file_gives_names_holding_commas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str],
                                                 module: str, option: str, key: str) -> None:
    # was: "@names.txt" taken for one name (not found), and a name holding a comma could not be given at all
    seen = captured_config(monkeypatch, module)
    names = tmp_path / "names.txt"
    names.write_bytes("\ufeffred, green\r\n\r\n  blue  \n041 Épée, \"x\"!\n".encode())  # a BOM, CRLF, blank lines
    for value, expected in ((f"@{names}", ["red, green", "blue", "041 Épée, \"x\"!"]),
                            ("red, green", ["red", "green"])):
        code, output = coseg(*command, "--data", tmp_path, "--output", tmp_path / "run", option, value)
        assert code == 1 and "stand-in trainer" in output, output
        assert getattr(seen.pop(), key) == expected


def test_a_names_file_in_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = captured_config(monkeypatch, "apps.retrieval.train")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "classes.txt").write_text("a,b\n", encoding="utf-8")
    code, output = coseg("retrieval", "train", "--data", tmp_path, "--output", tmp_path / "run", "--train-classes",
                         "@~/classes.txt")
    assert code == 1 and seen[0].train_classes == ["a,b"], output


def test_retrieval_evaluate_reads_the_training_classes_from_a_file(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    data = write_class_folders(tmp_path / "data", ["red, green", "red", "green", "blue"], per_class=2)
    names = tmp_path / "train.txt"
    names.write_text("red, green\nblue\n", encoding="utf-8")
    code, output = coseg("retrieval", "evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev",
                         "--train-classes", f"@{names}", "--quiet")
    assert code == 0, output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert (summary["classes"], summary["images"]) == (2, 4)  # the test classes: red and green


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the names file '{file}' (No such file or directory)"),
    (b"", "the names file '{file}' names none: write one name a line"),
    (b" \n\n", "the names file '{file}' names none: write one name a line"),
    (b"caf\xe9\n", "the names file '{file}' is not UTF-8 text (byte 0xe9 at position 3): save it as UTF-8"),
])
@pytest.mark.parametrize("command", [["retrieval", "train"], ["retrieval", "evaluate"]])
def test_a_names_file_that_names_nothing_is_a_usage_error_naming_it(tmp_path: Path, command: list[str],
                                                                   content: bytes, message: str) -> None:
    file = tmp_path / "names.txt"
    if content is not None:
        file.write_bytes(content)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not read: the option is refused first")
    code, output = coseg(*command, *(["--checkpoint", model] if command[-1] == "evaluate" else []), "--data",
                         tmp_path, "--output", tmp_path / "run", "--train-classes", f"@{file}")
    assert code == 2 and f"Invalid value for '--train-classes': {message.format(file=file)}" in output, output
    assert not (tmp_path / "run").exists()


def test_a_folder_given_as_the_names_file_is_named(tmp_path: Path) -> None:
    code, output = coseg("train", "--data", tmp_path, "--output", tmp_path / "run", "--val-groups", f"@{tmp_path}")
    assert code == 2 and f"Invalid value for '--val-groups': cannot read the names file '{tmp_path}' (Is a " \
                         "directory)" in output, output


@pytest.mark.parametrize("command, option", [(["train"], "--train-groups"), (["retrieval", "train"], "--val-classes"),
                                             (["retrieval", "evaluate"], "--train-classes")])
def test_the_help_tells_the_names_file(command: list[str], option: str) -> None:
    code, output = coseg(*command, "--help")
    text = " ".join(output.split())
    start = text.index(f"{option} TEXT")
    assert code == 0 and "Names holding a comma: @FILE, a UTF-8 file of one name a line." in text[start:start + 400]
