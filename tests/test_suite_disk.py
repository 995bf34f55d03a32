"""The suite removes what passed tests wrote: a full run writes about 14 GB of checkpoints into temporary folders, and
keeping them (pytest's default keeps every test's folder of the last three runs) fills a CI machine's disk."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TESTS = '''
def test_passes(tmp_path):
    (tmp_path / "model.bin").write_bytes(bytes(1000))

def test_fails(tmp_path):
    (tmp_path / "model.bin").write_bytes(bytes(1000))
    assert False
'''


def test_a_passed_tests_folder_is_removed_and_a_failed_tests_folder_kept(tmp_path) -> None:
    (tmp_path / "test_two.py").write_text(TESTS, encoding="utf-8")
    base = tmp_path / "base"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pytest.ini"),
               "--rootdir", str(tmp_path), "--basetemp", str(base), str(tmp_path / "test_two.py")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    left = sorted(path.relative_to(base).as_posix() for path in base.rglob("*.bin"))
    assert left == ["test_fails0/model.bin"]
