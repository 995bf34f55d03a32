"""The CLI shows expected failures as one clear line, with the message as it was written."""
from __future__ import annotations

import click
import pytest

from apps.cli import friendly_errors


@pytest.mark.parametrize("error, shown", [
    (KeyError("no group 'x' in layout 'folders'"), "no group 'x' in layout 'folders'"),
    (ValueError("'quoted' at both ends'"), "'quoted' at both ends'"),
    (FileNotFoundError("missing.yaml"), "missing.yaml"),
    (PermissionError(13, "Permission denied", "/data/lost+found"), "Permission denied: /data/lost+found"),
    (OSError(28, "No space left on device", b"/out/caf\xe9.png"), "No space left on device: /out/caf\\xe9.png"),
    (IsADirectoryError(21, "Is a directory"), "[Errno 21] Is a directory"),
])
def test_message_kept_whole(error: Exception, shown: str) -> None:
    @friendly_errors
    def fail() -> None:
        raise error

    with pytest.raises(click.ClickException) as caught:
        fail()
    assert caught.value.message == shown


def test_option_errors_exit_as_usage_errors() -> None:
    """A bad option or config value found by the library exits with code 2, as click's own usage errors; a bad
    input file with 1."""
    from coseg.engine import ConfigError

    @friendly_errors
    def fail(error: Exception) -> None:
        raise error

    for error, code in ((ConfigError("epochs must be >= 1, got 0"), 2), (ValueError("a.png: not an image"), 1)):
        with pytest.raises(click.ClickException) as caught:
            fail(error)
        assert caught.value.exit_code == code and caught.value.message == str(error)


def test_unexpected_errors_pass_through() -> None:
    @friendly_errors
    def fail() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        fail()
