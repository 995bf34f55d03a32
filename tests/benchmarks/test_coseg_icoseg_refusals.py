"""benchmarks/coseg_icoseg.py refuses a negative or not finite --minutes in one line, before it makes the run folder."""
from __future__ import annotations

import pytest

from tests.benchmarks.scripts import run_script
from tests.benchmarks.test_coseg_icoseg import TINY, icoseg_like


@pytest.mark.slow
@pytest.mark.parametrize("minutes, shown", [("-1", "-1.0"), ("nan", "nan"), ("inf", "inf")])
def test_negative_or_not_finite_minutes_is_refused_before_the_run_folder_is_made(tmp_path, minutes, shown):
    data = icoseg_like(tmp_path / "icoseg")
    out = tmp_path / "out" / "icoseg.json"
    done = run_script("coseg_icoseg.py", "--data", data, "--minutes", minutes, *TINY, "--out", out)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == \
        f"coseg_icoseg.py: error: --minutes must be a finite number >= 0 (0: no time budget), got {shown}", done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("value, message", [("image_size=33", "image_size must be a multiple of 32, got 33"),
                                            ("epochs=0", "epochs must be >= 1, got 0")])
def test_a_value_the_trainer_refuses_is_refused_before_the_run_folder_is_made(tmp_path, value, message):
    """A --set value train() refuses gave its traceback after an empty <out>_run/ was made."""
    data = icoseg_like(tmp_path / "icoseg")
    out = tmp_path / "out" / "icoseg.json"
    done = run_script("coseg_icoseg.py", "--data", data, "--minutes", 1, *TINY, "--set", value, "--out", out)
    assert done.returncode != 0 and message in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
