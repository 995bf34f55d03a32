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


def test_unexpected_errors_pass_through() -> None:
    @friendly_errors
    def fail() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        fail()
