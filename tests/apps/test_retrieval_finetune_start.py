"""The fine-tuning stage of a staged retrieval run starts from the head stage's best epoch: its model and its loss's
own state (SoftTriple's centres), also when a run is resumed before that stage; the loss's state is kept in a file
beside each model file, which no model loader takes for a model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apps.retrieval import train as train_module
from apps.retrieval.components import build_components
from apps.retrieval.learner import RetrievalLearner
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from apps.retrieval.train import FINETUNE_DIR, train
from coseg.engine import load_training_state
from coseg.models import checkpoint_metadata
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_set(tmp_path_factory.mktemp("retrieval") / "data")


def snapshot(learner: RetrievalLearner) -> dict[str, torch.Tensor]:
    """The head's weights and SoftTriple's centres of ``learner`` as they are now."""
    return {"head": learner.net.embedding.weight.detach().clone(), "centers": learner.loss.centers.detach().clone()}


class Recorder:
    """Replaces validation by the scores ``scores`` (one per validation, in order), and records the learner at each
    validation (``validated``) and at the first step of each fine-tuning session (``starts``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
        self.scores = list(scores)
        self.validated: list[dict[str, torch.Tensor]] = []
        self.starts: list[dict[str, torch.Tensor]] = []
        self.new_session = True
        objective = RetrievalLearner.objective

        def validate(_, learner: RetrievalLearner) -> dict[str, float]:
            self.validated.append(snapshot(learner))
            score = self.scores.pop(0)
            return {"R@1": score, "MAP@R": score}

        def record_start(learner: RetrievalLearner, *args: torch.Tensor) -> dict[str, torch.Tensor]:
            if not learner.head_only and self.new_session:
                self.starts.append(snapshot(learner))
                self.new_session = False
            return objective(learner, *args)

        monkeypatch.setattr(train_module.Validation, "__call__", validate)
        monkeypatch.setattr(RetrievalLearner, "objective", record_start)

    def session(self) -> None:
        """A new training session (a resumed run) begins: record its first fine-tuning step."""
        self.new_session = True


def loss_file(model_file: Path) -> Path:
    """The loss's state saved beside ``model_file``: ``best.safetensors`` → ``best.loss.safetensors``."""
    return model_file.with_name(model_file.stem + ".loss.safetensors")


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert torch.equal(a["centers"], b["centers"]), "the loss's centres differ"
    assert torch.equal(a["head"], b["head"]), "the heads differ"


def test_fine_tuning_starts_from_the_best_epochs_loss_centres_not_the_last(data, tmp_path, monkeypatch):
    seen = Recorder(monkeypatch, [10.0, 30.0, 20.0, 5.0])  # head stage: best epoch 2 of 3; fine-tuning worse
    run = tmp_path / "run"
    result = train(tiny_config(data, run, loss="soft_triple", epochs=3, finetune_epochs=1))
    assert result.stages["head"].best_epoch == 2 and not result.promoted_finetune
    best, last = seen.validated[1], seen.validated[2]
    assert not torch.equal(best["centers"], last["centers"])  # the centres moved after the best epoch
    (start,) = seen.starts
    assert_same_state(start, best)
    saved = load_file(str(loss_file(run / "best.safetensors")))
    assert saved.keys() == {"centers"} and torch.equal(saved["centers"], best["centers"])


def test_a_run_resumed_before_fine_tuning_starts_from_the_best_epochs_loss_centres(data, tmp_path, monkeypatch):
    seen = Recorder(monkeypatch, [10.0, 30.0, 20.0, 5.0, 6.0])
    run = tmp_path / "run"
    train(tiny_config(data, run, loss="soft_triple", epochs=3))  # the head stage alone: best epoch 2 of 3
    best, last = seen.validated[1], seen.validated[2]
    assert not torch.equal(best["centers"], last["centers"]) and seen.starts == []
    seen.session()
    result = train(tiny_config(data, run, loss="soft_triple", epochs=3, finetune_epochs=1), resume=True)
    assert result.stages["head"].epochs_run == 3 and len(seen.validated) == 4  # nothing left of the head stage
    assert_same_state(seen.starts[0], best)
    # once the fine-tuning stage has started, a resumed run goes on from its own checkpoint
    finetuned = load_training_state(run / FINETUNE_DIR / "last.pt")["model"]
    seen.session()
    train(tiny_config(data, run, loss="soft_triple", epochs=3, finetune_epochs=2), resume=True)
    assert torch.equal(seen.starts[1]["centers"], finetuned["loss.centers"])
    assert torch.equal(seen.starts[1]["head"], finetuned["net.embedding.weight"])


def test_the_loss_state_beside_the_model_files(data, tmp_path, monkeypatch):
    Recorder(monkeypatch, [10.0, 30.0, 20.0, 40.0])  # the fine-tuned model validates better: it is promoted
    run = tmp_path / "run"
    result = train(tiny_config(data, run, loss="soft_triple", epochs=3, finetune_epochs=1))
    assert result.promoted_finetune
    for folder in (run, run / FINETUNE_DIR):
        for name in ("best.safetensors", "last.safetensors"):
            loss_state = loss_file(folder / name)
            assert checkpoint_metadata(loss_state) == checkpoint_metadata(folder / name)  # saved with that model
            model = load_retrieval_model(folder / name)  # the model file holds the model alone
            assert load_file(str(folder / name)).keys() == model.state_dict().keys()
            with pytest.raises(ValueError, match="holds a retrieval loss state, not a retrieval model: "
                                                 "give the model file"):
                load_retrieval_model(loss_state)
    promoted, finetuned = (loss_file(folder / "best.safetensors") for folder in (run, run / FINETUNE_DIR))
    assert promoted.read_bytes() == finetuned.read_bytes()
    # a loss without a state of its own writes none; a run replacing one removes the replaced run's
    monkeypatch.undo()
    train(tiny_config(data, run, epochs=1, finetune_epochs=1, overwrite=True))
    assert not list(run.rglob("*.loss.safetensors"))
    assert (run / "best.safetensors").is_file() and (run / FINETUNE_DIR / "best.safetensors").is_file()


def test_load_restores_model_and_loss_state_and_warns_without_a_matching_one(data, tmp_path):
    cfg = tiny_config(data, tmp_path, loss="soft_triple")

    def learner(seed: int) -> RetrievalLearner:
        torch.manual_seed(seed)
        net = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8)
        return RetrievalLearner(net, build_components(cfg, torch.tensor([0, 0, 1, 1]), 2), cfg.loss)

    saved, loaded = learner(0), learner(1)
    model_file = tmp_path / "best.safetensors"
    saved.save(model_file, {"epoch": "2"})
    loaded.load(model_file)
    assert_same_state(snapshot(loaded), snapshot(saved))
    saved.save(tmp_path / "last.safetensors", {"epoch": "3"})
    loss_file(tmp_path / "last.safetensors").replace(loss_file(model_file))  # as if killed in between
    other = learner(2)
    with pytest.warns(UserWarning, match=r"best.loss.safetensors was saved with another model \(epoch 3, not 2\)"):
        other.load(model_file)
    assert torch.equal(other.net.embedding.weight, saved.net.embedding.weight)
    assert torch.equal(other.loss.centers, learner(2).loss.centers)  # kept
    loss_file(model_file).unlink()  # a run of an older version
    with pytest.warns(UserWarning, match="best.loss.safetensors not found: the loss's state"):
        other.load(model_file)
