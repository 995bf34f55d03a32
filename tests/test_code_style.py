"""The repository's Python files keep the style the codebase follows: lines of at most 120 characters."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 120


def python_files() -> list[Path]:
    """The tracked ``.py`` files (a clone has its .git; an unpacked archive falls back to a walk)."""
    try:
        listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
        return [ROOT / name for name in listed.stdout.split() if (ROOT / name).is_file()]  # deleted, not committed
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*.py") if not {".venv", "build"} & set(p.relative_to(ROOT).parts)]


def test_no_line_is_longer_than_120_characters() -> None:
    files = python_files()
    assert len(files) > 100
    long = [f"{path.relative_to(ROOT)}:{number} ({len(line)})" for path in files
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, f"lines over {MAX_LINE} characters: {', '.join(long)}"
