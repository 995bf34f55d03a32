"""A pickle that creates a marker file when unpickled: proves a loader refuses pickles without running them."""
from __future__ import annotations

import os
import pickle
from typing import Union


class MarkerPayload:
    """Unpickling it creates the file ``marker``: a stand-in for code a malicious pickle would run."""

    def __init__(self, marker: Union[str, os.PathLike]) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def malicious_pickle(marker: Union[str, os.PathLike]) -> bytes:
    """Bytes of a pickled state-dict-like mapping whose unpickling creates ``marker``."""
    return pickle.dumps({"conv_stem.weight": MarkerPayload(marker)}, protocol=2)
