"""A command's error raised in a DataLoader worker process (``retrieval evaluate`` / ``export`` with ``--workers``, a
training's start-up features) was told with the worker's whole traceback as its message, which torch puts there;
every command now tells the worker's own message, as without workers."""
from __future__ import annotations

import pytest
from torch.utils.data import DataLoader, Dataset

from apps.cli import error_message


class Unreadable(Dataset):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        raise self.error


@pytest.mark.parametrize("error, told", [
    (ValueError("photos/a.jpg: not an image"), "photos/a.jpg: not an image"),
    (KeyError("class 'x'"), "class 'x'"),  # a KeyError's message without the quotes str adds
    (OSError("disk gone"), "disk gone"),
])
def test_a_worker_s_error_is_told_with_its_own_message(error: Exception, told: str) -> None:
    with pytest.raises(type(error)) as caught:
        next(iter(DataLoader(Unreadable(error), num_workers=1)))
    assert "DataLoader worker process" in str(caught.value)  # torch's message, as the command got it
    assert error_message(caught.value) == told


def test_other_errors_keep_their_message() -> None:
    message = "Caught ValueError in DataLoader worker process 0.\nnot torch's traceback"
    assert error_message(ValueError(message)) == message
