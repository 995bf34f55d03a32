"""Under DDP the retrieval objective is that of the whole batch: 2 gloo processes, each given its share of one
fixed batch, get the loss, the gradients (head and the loss's own parameters) and the hooks' state that one process
gets on the whole batch — with a miner, SoftTriple's centres, the class-representative proximity term and smart
mining's triplets and controller; and the all-gather itself with shares of unequal sizes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.learner import RetrievalLearner
from coseg.engine import DistInfo
from coseg.engine.distributed import all_gather_rows

PROCESSES = 2
CLASSES, SAMPLES = 4, 4  # of the training set the components are built for
FEATURES, EMBEDDING = 6, 4
CASES = {
    "triplet_batch_hard": dict(loss="triplet_margin", miner="batch_hard"),
    "soft_triple": dict(loss="soft_triple"),
    "class_representative": dict(loss="triplet_margin", sampler="class_representative", proximity_weight=1.0),
    "smart_mining": dict(loss="triplet_margin", sampler="smart_mining", target_active=0.5, controller_gain=1.0),
}


def global_batch(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (8 or 6, FEATURES) and labels of one batch: P = 4 classes × K = 2, or for smart mining 2 triplets
    laid out as the sampler does, anchors then positives then negatives."""
    features = torch.randn(8, FEATURES, generator=torch.Generator().manual_seed(1))
    if case == "smart_mining":
        return features[:6], torch.tensor([0, 2, 0, 2, 1, 3])
    return features, torch.arange(4).repeat_interleave(2)


def share(case: str, values: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process ``rank``'s share of a batch's ``values``: whole classes, or for smart mining whole triplets."""
    if case == "smart_mining":
        return values.unflatten(0, (3, -1))[:, rank::world_size].flatten(0, 1)
    per_rank = len(values) // world_size
    return values[rank * per_rank:(rank + 1) * per_rank]


def step(case: str, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
    """One backward of ``case``'s objective on process ``rank``'s share (the whole batch in one process): the loss,
    the parameters' gradients and the hooks' buffers."""
    cfg = RetrievalTrainConfig(classes_per_batch=4, samples_per_class=2, embedding_dim=EMBEDDING, **CASES[case])
    torch.manual_seed(0)
    head = nn.Linear(FEATURES, EMBEDDING)
    parts = build_components(cfg, torch.arange(CLASSES).repeat_interleave(SAMPLES), CLASSES, rank, world_size)
    learner = RetrievalLearner(head, parts, cfg.loss)  # type: ignore[arg-type]
    model = nn.parallel.DistributedDataParallel(learner) if world_size > 1 else learner
    features, labels = (share(case, values, rank, world_size) for values in global_batch(case))
    terms = learner.objective(model(features), labels, DistInfo(rank=rank, world_size=world_size))
    terms["loss"].backward()
    found = {"loss": terms["loss"].detach()}
    found.update({f"grad {name}": p.grad.clone() for name, p in learner.named_parameters()})
    found.update({f"buffer {name}": b.clone() for name, b in learner.hooks.named_buffers()})
    return found


def uneven_gather(rank: int) -> dict[str, torch.Tensor]:
    """Rank r gathers its 1 + 2r rows of value r + 1, then backpropagates a loss that weighs row i by i: the
    gathered rows and the gradient of its own."""
    local = torch.full((1 + 2 * rank, 2), rank + 1.0, requires_grad=True)
    gathered = all_gather_rows(local, DistInfo(rank=rank, world_size=PROCESSES))
    (gathered * torch.arange(len(gathered)).unsqueeze(1)).sum().backward()
    return {"gathered": gathered.detach(), "grad": local.grad}


def _process(rank: int, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=PROCESSES)
    try:
        found = {case: step(case, rank, PROCESSES) for case in CASES}
        torch.save({**found, "uneven": uneven_gather(rank)}, f"{out}{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> list[dict]:
    """What each of the 2 processes found, case by case."""
    top = tmp_path_factory.mktemp("global_batch")
    torch.multiprocessing.start_processes(_process, args=(str(top / "store"), str(top / "rank")), nprocs=PROCESSES,
                                          start_method="spawn")
    return [torch.load(top / f"rank{rank}.pt") for rank in range(PROCESSES)]


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_every_process_gets_the_gradients_of_one_process_on_the_whole_batch(processes, case):
    single = step(case)
    assert single["loss"] > 0 and any(name.startswith("grad loss.") for name in single) == (case == "soft_triple")
    for found in processes:
        assert found[case].keys() == single.keys()
        for name, value in single.items():
            torch.testing.assert_close(found[case][name], value, rtol=0, atol=1e-6, msg=name)



@pytest.mark.ddp
@pytest.mark.slow
def test_shares_of_unequal_sizes_are_gathered_and_get_the_sum_of_the_gradients_of_their_rows(processes):
    expected = torch.tensor([1.0, 2.0, 2.0, 2.0]).unsqueeze(1).expand(4, 2)
    for rank, found in enumerate(processes):
        assert torch.equal(found["uneven"]["gathered"], expected)
        rows = torch.arange(4.0)[[0] if rank == 0 else [1, 2, 3]]
        assert torch.equal(found["uneven"]["grad"], PROCESSES * rows.unsqueeze(1).expand(-1, 2))
