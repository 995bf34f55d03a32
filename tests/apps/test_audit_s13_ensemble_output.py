"""Audit (s13) of `coseg ensemble --output`: a file named like a run's training state is refused."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from apps.cli import main
from coseg.models import create_model


def test_an_ensemble_is_not_written_as_last_pt(tmp_path: Path) -> None:
    """Was: `--output run/last.pt --overwrite` (meant: last.safetensors) replaced the run's training state, and a new
    last.pt was a model file that evaluate and predict refuse as a training state."""
    models = []
    for seed in (0, 1):
        models.append(tmp_path / f"m{seed}.safetensors")
        create_model("unet", weights=None, embedding_dim=8).save(models[-1], metadata={"image_size": "64"})
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"the run's training state")
    for output, extra in ((run / "last.pt", ["--overwrite"]), (tmp_path / "new" / "last.pt", [])):
        result = CliRunner().invoke(main, ["ensemble", *map(str, models), "--output", str(output), *extra])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--output': last.pt is the name of a run's training state" in result.output
        assert "*.safetensors" in result.output
    assert (run / "last.pt").read_bytes() == b"the run's training state" and not (tmp_path / "new").exists()
    result = CliRunner().invoke(main, ["ensemble", *map(str, models), "--output", str(run / "last.safetensors")])
    assert result.exit_code == 0 and (run / "last.safetensors").is_file(), result.output
