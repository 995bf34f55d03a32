"""``coseg train`` and ``coseg retrieval train`` refuse a seed NumPy cannot take and an unknown architecture by the
option's name before they read the data."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("options, message", [
    (["--seed", "-1"], "seed must be in [0, 4294967293] (the 3 members take seeds seed to seed + 2), got -1"),
    (["--seed", str(2**32 - 2)], "seed must be in [0, 4294967293]"),  # its third member's seed would be 2**32
    (["--seed", str(2**32 - 1), "--members", "1"], None),  # the largest seed one run takes
    (["--arch", "nope"], "arch 'nope' is unknown; valid: "),
])
def test_seed_and_architecture_are_refused_by_name_before_the_data_is_read(tmp_path, options, message):
    """Was: NumPy's "Seed must be between 0 and 2**32 - 1" after the data scan, exit 1; smp's error for --arch."""
    from click.testing import CliRunner

    from apps.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), *options])
    if message is None:
        assert "seed must be" not in result.output, result.output
        return
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_the_retrieval_trainer_refuses_a_negative_seed_by_name(tmp_path):
    from click.testing import CliRunner

    from apps.cli import main

    result = CliRunner().invoke(main, ["retrieval", "train", "--data", str(tmp_path), "--output", str(tmp_path / "run"),
                                       "--seed", "-1"])
    assert result.exit_code == 2 and "seed must be in [0, 4294967295], got -1" in result.output, result.output
