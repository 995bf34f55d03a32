"""An image that one process cannot read while another can (each machine's copy of the data set, a file replaced
while they read it): under torchrun the processes would build training sets of different sizes whose batches no
longer pair up, and the run would wait for the missing batches until the process group times out (3 hours). Both
trainers refuse it instead, on every process, naming the file. Two gloo processes on the CPU (``spawn``)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.ddp, pytest.mark.slow]
WORLD_SIZE = 2


def _train_with_a_file_rank_1_cannot_read(rank: int, store: str, data: dict, outcome) -> None:
    """One process: train both trainers with ``data[trainer][1]`` unreadable on rank 1 only; what each raised goes
    into ``outcome[(trainer, rank)]``."""
    import torch.distributed as dist

    import apps.retrieval.train as retrieval_train
    import coseg.data.cache as cache
    import coseg.train as coseg_train
    from coseg.config import CosegTrainConfig
    from coseg.data.io import DataFileError
    from coseg.engine import DistInfo
    from tests.apps.retrieval_runs import tiny_config

    torch.set_num_threads(1)
    decode = cache.decode_sample
    unreadable = {data["coseg"][1], data["retrieval"][1]}

    def decode_sample(sample, size):
        if rank == 1 and str(sample.image) in unreadable:
            raise DataFileError(sample.image, "not on this machine")
        return decode(sample, size)

    cache.decode_sample = decode_sample
    # a short timeout: without the check a hung run fails here instead of hanging the test for 3 hours
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE,
                            timeout=timedelta(seconds=60))
    info = DistInfo(rank=rank, world_size=WORLD_SIZE)
    try:
        # 2 groups of 5 images, K = 4: 2 batches of both groups where all 5 are read, 1 where a group has 4
        configs = {
            "coseg": (coseg_train, CosegTrainConfig(
                data=data["coseg"][0], output=f"{data['coseg'][0]}-run", epochs=1, members=1, weights="none",
                image_size=64, groups_per_batch=2, images_per_group=4, triplet_pixels=8, val_fraction=0.0,
                device="cpu", quiet=True)),
            "retrieval": (retrieval_train, tiny_config(Path(data["retrieval"][0]),
                                                       Path(f"{data['retrieval'][0]}-run"), epochs=1)),
        }
        for trainer, (module, cfg) in configs.items():
            try:
                module.train(cfg, dist=info)
                outcome[(trainer, rank)] = ("trained", "")
            except Exception as e:  # noqa: BLE001 - recorded for the test to judge
                outcome[(trainer, rank)] = (type(e).__name__, str(e))
    finally:
        dist.destroy_process_group()


def test_an_image_only_one_process_cannot_read_stops_every_process_with_one_clear_error(tmp_path):
    from tests.apps.retrieval_runs import tiny_set
    from tests.coseg.pipeline_fixtures import synthetic_set

    coseg_data = synthetic_set(tmp_path / "coseg", groups=2, images=5)
    retrieval_data = tiny_set(tmp_path / "retrieval")
    data = {"coseg": (str(coseg_data), str(sorted((coseg_data / "images").rglob("*.*"))[0])),
            "retrieval": (str(retrieval_data), str(sorted((retrieval_data / "class0").iterdir())[0]))}
    context = torch.multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        outcome = manager.dict()
        torch.multiprocessing.start_processes(_train_with_a_file_rank_1_cannot_read,
                                              args=(str(tmp_path / "store"), data, outcome), nprocs=WORLD_SIZE,
                                              start_method="spawn")
        outcome = dict(outcome)
    for trainer in ("coseg", "retrieval"):
        name = Path(data[trainer][1]).name
        for rank in range(WORLD_SIZE):  # the same error on every process, before any training
            kind, message = outcome[(trainer, rank)]
            assert kind == "ValueError", (trainer, rank, kind, message)
            assert name in message and "process 1 could not use it (not on this machine) but process 0 could" in message
        assert not (Path(f"{data[trainer][0]}-run") / "log.csv").exists()
