"""A line the README quotes is the line the command prints: `evaluate --report`'s list of the predicted masks it could
not save (the README quoted it without the words between "mask(s)" and the colon)."""
from __future__ import annotations

import re
from pathlib import Path

from coseg.models import create_model
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import coseg

TEXT = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def quoted_line(start: str) -> re.Pattern:
    """The README's quote (in `code`) that begins with ``start``, as a pattern: N a number, … any text."""
    match = re.search(rf"`({re.escape(start)}[^`]*)`", TEXT)
    assert match, f"README no longer quotes a line beginning {start!r}"
    quote = " ".join(match.group(1).split())
    parts = re.split(r"(\bN\b|…)", quote)
    return re.compile("".join({"N": r"\d+", "…": ".+"}.get(part, re.escape(part)) for part in parts))


def test_the_quoted_line_of_unsaved_predictions_is_the_one_evaluate_prints(tmp_path: Path) -> None:
    """A folder where one predicted mask goes (one of the causes the README lists): the quoted line is printed."""
    model, out = tmp_path / "model.safetensors", tmp_path / "out"
    create_model("unet", weights=None, embedding_dim=4, group_levels=0).save(model, {"image_size": "32"})
    (out / "predictions" / "00-star" / "img000.png").mkdir(parents=True)
    data = synthetic_set(tmp_path / "data", groups=1, images=2, size=32)
    code, output = coseg("evaluate", "--quiet", "--report", "--checkpoint", model, "--data", data, "--output", out,
                         "--edge-radius", 0, "--no-colour-cut")
    pattern = quoted_line("could not save N predicted")
    assert code == 0 and any(pattern.fullmatch(line) for line in output.splitlines()), (pattern.pattern, output)
