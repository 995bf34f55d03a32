"""The one training engine behind both trainers (co-segmentation and retrieval).

It owns the loop: device, AMP on CUDA, channels_last, DDP, the learning-rate schedule, gradient clipping, the
non-finite-loss guard, a time budget, per-epoch validation, best/last checkpoints, resume, CSV log and progress.
A task supplies what differs: how one batch becomes losses, and how to validate."""
from __future__ import annotations

import ast
import contextlib
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from coseg.atomic import PathLike, remove_temporaries
from coseg.data.io import printable
from coseg.engine.checkpoint import (
    CheckpointError, check_best_file, check_metadata, check_world_size, load_training_state, rng_state,
    save_training_state, set_rng_state,
)
from coseg.engine.csv_log import CsvLog
from coseg.engine.distributed import (
    DistInfo, all_reduce_max, all_reduce_sum, barrier, broadcast_buffers, gather_to_main, split_random_streams,
)
from coseg.engine.ema import weight_ema
from metric import NonFiniteError


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient became NaN/Inf; the run stops and the last good checkpoint is left as it was.
    ``reason`` says what and where (epoch, step, the loss terms); ``first_epoch``: no checkpoint was written yet."""

    def __init__(self, message: str, reason: str = "", first_epoch: bool = False) -> None:
        super().__init__(message)
        self.reason, self.first_epoch = reason, first_epoch


class TrainTask(Protocol):
    """What :meth:`Engine.fit` trains: how one batch of the loader becomes losses, its size, and the validation."""

    def train_step(self, model: nn.Module, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        """Losses of one batch; key ``loss`` is optimised, every other entry is logged (means per epoch)."""

    def batch_size(self, batch: Any) -> int:
        """Number of images in ``batch`` (for throughput)."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of ``model`` (called on the main process only, model in eval mode)."""


class SaveableModel(Protocol):
    def save(self, path: Path, metadata: Optional[dict[str, str]] = None) -> None: ...


class UnreadableLog:
    """Files that could not be read during a run, after start-up (``files``: file → problem, in the order met),
    each warned about on stderr the first time; ``count``: the items they cost since it was last set to 0."""

    def __init__(self) -> None:
        self.files: dict[Path, str] = {}
        self.count = 0

    def note(self, path: PathLike, problem: str, outcome: str, counted: bool = True, warn: bool = True) -> None:
        """Note one item of ``path`` that could not be read (``problem``), and what was done instead (``outcome``):
        in ``count`` when ``counted`` (an epoch's items; else only listed, e.g. before training starts), warned
        about (when ``warn``) the first time the file is met."""
        self.count += counted
        path = Path(path)
        if path not in self.files:
            self.files[path] = problem
            if warn:
                where = "counted in log.csv's 'unreadable' column" if counted else "listed with the run's skipped files"
                tqdm.write(f"warning: {printable(path)}: {problem}; it could not be read during the run, so "
                           f"{outcome} ({where})", file=sys.stderr)

    def note_batch(self, batch: Any) -> None:
        """Note the items a training batch marks as replaced (``unreadable``, ``unreadable_problem``: lists of the
        failed file and why, "" for items read as they are; see :class:`coseg.data.CosegDataset`)."""
        if isinstance(batch, dict):
            for path, problem in zip(batch.get("unreadable", ()), batch.get("unreadable_problem", ())):
                if path:
                    self.note(path, problem, "another image of its group or class took its place in the batch")


@dataclass
class FitResult:
    epochs_run: int
    best_epoch: int
    best_metric: Optional[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_time: bool = False  # by its time budget: it ended with it, or was resumed after it was spent
    seconds: float = 0.0  # the run's training time, earlier sessions' included
    images_per_s: float = 0.0  # this session's training speed: its epochs' as log.csv counts them (no validation)
    train_seconds: float = 0.0  # the time ``images_per_s`` is over: this session's epochs after their first step
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # files that failed during the run (all ranks)
    max_epochs: Optional[int] = None  # the epochs the run was given (None: not known)


def lr_columns(optimizer: torch.optim.Optimizer) -> list[str]:
    """The ``log.csv`` column of each parameter group's learning rate: ``lr_<name>`` for a group with a ``name``
    entry, ``lr`` for an unnamed one (``lr<i>``, by the group's index, when several are unnamed)."""
    groups = optimizer.param_groups
    unnamed = sum(1 for g in groups if not g.get("name"))
    columns = [f"lr_{g['name']}" if g.get("name") else "lr" if unnamed == 1 else f"lr{i}"
               for i, g in enumerate(groups)]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"optimizer parameter groups share a name ({', '.join(c[3:] for c in repeated)}): give each "
                         "its own, as its learning rate's column in log.csv")
    return columns


_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback ")
_TRACEBACK = "Traceback (most recent call last):\n"


def worker_error(error: BaseException) -> Optional[BaseException]:
    """The error a DataLoader worker process raised, of ``error``'s type, with the worker's own message; None for
    any other error. torch raises a worker's error again in the main process with the worker's whole traceback as
    its message ("Caught ValueError in DataLoader worker process 0. Original Traceback ..."), which a command would
    show as the error's message."""
    text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else ""
    found = _WORKER_ERROR.match(text)
    if found is None or found[1] != type(error).__name__:  # not a worker's, or one torch raised as a RuntimeError
        return None
    lines = text.rpartition(_TRACEBACK)[2].splitlines()  # the last traceback of a chain: the error raised
    start = next((i for i, line in enumerate(lines) if not line.startswith(" ")), len(lines))  # after its frames
    kind = type(error)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):  # as the traceback names it
        name = f"{kind.__module__}.{name}"
    raised = "\n".join(lines[start:])
    if not raised.startswith(f"{name}: "):
        return None
    message: Any = raised[len(name) + 2:]
    if issubclass(kind, KeyError):  # a KeyError's text is the repr of its key
        with contextlib.suppress(ValueError, SyntaxError):
            message = ast.literal_eval(message)
    try:
        return kind(message)
    except Exception:  # a type taking other arguments
        return None


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    """Learning-rate multiplier at ``progress`` ∈ [0, 1] of the run: linear warm-up, then constant or cosine."""
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        rest = (progress - warmup) / max(1e-8, 1 - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))
    raise ValueError(f"unknown lr schedule '{schedule}'; valid: constant, cosine")


class Engine:
    """Train ``model`` with ``optimizer`` for ``epochs`` epochs (or until ``time_budget_s`` has passed).

    Files written by the main process into ``output_dir``: ``last.safetensors`` and ``best.safetensors`` (models,
    via ``model.save``, with ``metadata`` plus the epoch and its validation metrics; ``last.safetensors`` also with
    ``finished``: ``epochs`` or ``time`` when the run ended with its last epoch or its time budget, also when resumed
    with nothing left to train, ``no`` while it has not: interrupted, still training or resumed), ``last.pt``
    (training state for ``resume``), ``log.csv`` (one row per epoch: the learning rates of its last step, in
    :func:`lr_columns`, the task's mean loss terms to 6 significant digits, its ``seconds``, ``images_per_s`` after
    its first step (which holds the loader's start and first-batch compilation) and validation metrics).
    An epoch's ``last.pt`` is written before the model files it records, which a resume writes again: whatever write a
    kill stops, ``best.safetensors`` is the model of the best epoch that ``last.pt`` and ``log.csv`` record.
    The schedule (:func:`lr_factor`) is set before each step, at the share of the run's steps done before it (step
    ``k`` of ``n``: ``k / n``, as torch's and timm's per-step schedules do): with a warm-up the first step is at 1 %
    of the rate (a run of one step too), and a cosine schedule's last step at a small rate, not 0.
    With a time budget the schedule follows elapsed time, so a budgeted run still anneals to its end, and an epoch
    that ends with the budget spent (by its validation too) is the last one; a resumed run counts the time its
    checkpointed epochs took (saved in ``last.pt``), so the budget is not granted twice.
    With ``ema_decay`` > 0 an exponential moving average of the weights (:func:`~coseg.engine.ema.weight_ema`) is
    what is validated and saved in the ``.safetensors`` files (``eval_model``); ``last.pt`` holds both.

    Under DDP every rank but 0 draws from random streams of its own (:func:`split_random_streams`: augmentation and
    dropout differ between ranks), which ``last.pt`` holds rank by rank; the learning rate under a time budget
    follows the slowest rank's clock, and rank 0's buffers are copied to every rank after each epoch, so that all
    replicas stay equal to the checkpointed model.

    A file that can no longer be read during the run does not stop it: the dataset puts another item in its place
    and marks it in the batch (:meth:`UnreadableLog.note_batch`), and validation leaves it out and notes it in
    ``unreadable`` (pass the task's log); each file is warned about once, each epoch's count of such items (every
    rank's) is its log row's ``unreadable`` and the files are ``FitResult.unreadable``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, output_dir: Path, *, dist: DistInfo,
                 epochs: int, amp: bool = True, channels_last: bool = True, grad_clip: Optional[float] = None,
                 lr_schedule: str = "cosine", warmup: float = 0.05, time_budget_s: Optional[float] = None,
                 select_metric: str = "J", select_mode: str = "max", find_unused_parameters: bool = False,
                 metadata: Optional[dict[str, str]] = None, quiet: bool = False, ema_decay: float = 0.0,
                 unreadable: Optional[UnreadableLog] = None) -> None:
        if select_mode not in ("max", "min"):
            raise ValueError(f"select_mode must be 'max' or 'min', got '{select_mode}'")
        if time_budget_s is not None and not time_budget_s > 0:  # a negative one: a new run ends writing nothing
            raise ValueError(f"time_budget_s must be > 0 (None: no budget), got {time_budget_s}")
        if grad_clip is not None and not grad_clip >= 0:  # a negative norm would turn the gradients around
            raise ValueError(f"grad_clip must be >= 0 (0 or None: no clipping), got {grad_clip}")
        if not 0 <= warmup < 1:
            raise ValueError(f"warmup must be in [0, 1) (a fraction of the run), got {warmup}")
        lr_factor(1.0, warmup, lr_schedule)  # an unknown schedule is refused before any file is written
        self.dist = dist
        self.device = dist.device
        self.output_dir = Path(output_dir)
        self.epochs = epochs
        self.amp = amp and self.device.type == "cuda"
        self.grad_clip = grad_clip
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.time_budget_s = time_budget_s
        self.select_metric = select_metric
        self.select_mode = select_mode
        self.quiet = quiet
        self.metadata = dict(metadata or {})
        model = model.to(self.device)
        if channels_last:  # faster convolutions on CUDA and, with oneDNN, on the CPU too
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = weight_ema(model, ema_decay) if ema_decay else None
        self.ddp_model: nn.Module = (
            DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                    find_unused_parameters=find_unused_parameters)
            if dist.distributed else model)
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.lr_columns = lr_columns(optimizer)  # before a resume loads groups saved without their names
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.log = CsvLog(self.output_dir / "log.csv")
        self.unreadable = unreadable if unreadable is not None else UnreadableLog()

    @property
    def eval_model(self) -> nn.Module:
        """The model that is validated and saved: the weight average with ``ema_decay``, else the trained one."""
        return self.ema.module if self.ema is not None else self.model

    # --- checkpoints -------------------------------------------------------------------------------------
    def _save(self, epoch: int, best: Optional[float], best_epoch: int, metrics: dict[str, Any], seconds: float,
              rank_streams: list[dict[str, Any]], finished: str) -> None:
        """Write ``last.pt``, then the model files it records (:meth:`_save_models`); ``rank_streams``: every rank's
        random streams (``rng_state``); ``finished``: whether the run ends with this epoch (see the class)."""
        meta = {**self.metadata, "epoch": str(epoch),
                **{k: f"{v:.6g}" for k, v in metrics.items() if isinstance(v, (int, float))}}
        save_training_state(self.output_dir / "last.pt", {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "best": best, "best_epoch": best_epoch, "rng": rng_state(),
            "world_size": self.dist.world_size, "seconds": seconds, "model_metadata": meta, "finished": finished,
            **({"rng_ranks": rank_streams} if self.dist.distributed else {}),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        })
        self._save_models(epoch, meta, best=best_epoch == epoch, finished=finished)

    def _save_models(self, epoch: int, metadata: dict[str, str], best: bool, finished: str) -> None:
        """Write ``last.safetensors`` (``finished`` in its metadata) and, when epoch ``epoch`` is the best one,
        ``best.safetensors`` (via ``model.save``, which may write files of its own beside them), after its ``last.pt``:
        a run killed on the way rewrites them when resumed, so that they never hold an epoch ``last.pt`` and
        ``log.csv`` do not."""
        model: SaveableModel = self.eval_model  # type: ignore[assignment]
        try:
            if best:
                model.save(self.output_dir / "best.safetensors", metadata=metadata)
            model.save(self.output_dir / "last.safetensors", metadata={**metadata, "finished": finished})
        except OSError as e:
            raise self._write_failed(epoch, e, state_written=True) from e

    def _resume(self) -> dict[str, Any]:
        """Load ``last.pt`` into the model, optimizer and random streams; returns its state (see :meth:`_save`)."""
        path = self.output_dir / "last.pt"
        state = load_training_state(path)  # on the CPU, where random streams must be: load_state_dict moves the rest
        check_world_size(path, state, self.dist.world_size)
        check_metadata(path, state, self.metadata)
        check_best_file(path, state)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else lines[0]  # the first mismatch, not "Error(s) in loading ..."
            raise CheckpointError(f"{path}: does not fit this model ({detail}); resume it with the options and the "
                                  "data it was trained with") from None
        if (self.ema is not None) != ("ema" in state):
            raise CheckpointError(f"{path}: saved by a run {'with' if 'ema' in state else 'without'} "
                                  f"a weight average (ema_decay); resume it with the same setting")
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:  # other parameter groups, or a damaged state
            raise CheckpointError(f"{path}: its optimizer state does not fit this optimizer ({e}); resume it with the "
                                  "options it was trained with") from None
        if state["scaler"]:  # empty when saved without AMP (CPU, --no-amp): a resume with it starts its scale anew
            self.scaler.load_state_dict(state["scaler"])
        rank_streams = state.get("rng_ranks")
        if rank_streams is not None and not (isinstance(rank_streams, list)
                                             and len(rank_streams) == self.dist.world_size):
            raise CheckpointError(f"{path}: damaged: its random streams (rng_ranks) are not one per process")
        set_rng_state(rank_streams[self.dist.rank] if rank_streams else state["rng"])
        if rank_streams is None:  # saved when every rank had rank 0's streams
            split_random_streams(self.dist)
        return state

    def _restore_files(self, state: dict[str, Any], finished: str) -> None:
        """Rewrite the log and the model files of the resumed ``state`` (a run killed after writing its ``last.pt``
        may have left them of an earlier epoch, its log with an epoch the state does not hold), ``finished`` in its
        ``last.safetensors`` (see the class): ``no`` when the run goes on. A run resumed with nothing left to train
        ends finished, also when its ``last.pt`` says ``no`` (it was interrupted, and is resumed with fewer epochs or a
        smaller time budget): that file is written again first, saying so."""
        self.log.load(up_to_epoch=state["epoch"])
        if not isinstance(state.get("model_metadata"), dict):  # older ones wrote the model files first
            return
        try:
            if finished != "no" and state.get("finished") != finished:
                save_training_state(self.output_dir / "last.pt", {**state, "finished": finished})
        except OSError as e:
            raise self._write_failed(state["epoch"], e, state_written=True) from e
        self._save_models(state["epoch"], state["model_metadata"], best=state["best_epoch"] == state["epoch"],
                          finished=finished)

    def _non_finite(self, what: str, epoch: int, step: int, terms: dict[str, torch.Tensor]) -> NonFiniteLossError:
        shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
        reason = f"non-finite {what} at epoch {epoch}, step {step} ({shown})"
        if epoch == 1:  # no epoch has ended, so there is no checkpoint to resume from
            return NonFiniteLossError(f"{reason}; stopped before the first checkpoint. Lower the learning rate or "
                                      "check the data, then train again", reason, first_epoch=True)
        return NonFiniteLossError(
            f"{reason}; stopped. The last good checkpoint is {self.output_dir / 'last.safetensors'} (epoch "
            f"{epoch - 1}); check the data, then --resume (which keeps the run's learning rate), or train anew with a "
            "lower one (--overwrite)", reason)

    def _write_failed(self, epoch: int, error: OSError, state_written: bool = False) -> CheckpointError:
        """The error of a run stopped because epoch ``epoch``'s log row, checkpoint or, ``state_written`` (its
        ``last.pt`` is), model files could not be written (a full disk); the files written before are whole (atomic
        writes)."""
        reason = error.strerror or str(error)
        if error.filename is not None:
            reason = f"{reason}: {error.filename}"
        stopped = f"{self.output_dir}: cannot write the files of epoch {epoch} ({reason}); the run stopped"
        if state_written:
            return CheckpointError(f"{stopped}, its checkpoint (last.pt) written: free space, then --resume, which "
                                   "writes its model files")
        if epoch == 1:
            return CheckpointError(f"{stopped} before its first checkpoint: free space, then train again")
        return CheckpointError(f"{stopped}, its checkpoint of epoch {epoch - 1} (last.pt) left as it was: free space, "
                               "then --resume")

    def _elapsed(self, t_start: float) -> float:
        """Seconds since ``t_start``; under DDP the most of any rank, so that every rank sets the same learning
        rate."""
        seconds = time.perf_counter() - t_start
        if not self.dist.distributed:
            return seconds
        return float(all_reduce_max(torch.tensor(seconds, dtype=torch.float64, device=self.device), self.dist))

    def _is_better(self, value: float, best: Optional[float]) -> bool:
        if best is None:
            return True
        return value > best if self.select_mode == "max" else value < best

    # --- the loop ----------------------------------------------------------------------------------------
    def fit(self, task: TrainTask, loader: Iterable, resume: bool = False,
            before_write: Optional[Callable[[], None]] = None) -> FitResult:
        """Run the epochs; ``loader``'s batch sampler gets ``set_epoch(epoch)`` when it has one. ``before_write`` is
        called in the main process before the first file is written, unless a resumed run has nothing left to train
        (then the run's files, its config too, are left as they are). An error a DataLoader worker process raised
        (e.g. a group none of whose images can be read any more) is raised with the worker's own message
        (:func:`worker_error`), torch's error (the worker's traceback) as its cause."""
        try:
            return self._fit(task, loader, resume, before_write)
        except Exception as e:
            told = worker_error(e)
            if told is None:
                raise
            raise told from e

    def _fit(self, task: TrainTask, loader: Iterable, resume: bool,
             before_write: Optional[Callable[[], None]]) -> FitResult:
        steps_per_epoch = len(loader)  # type: ignore[arg-type]
        if steps_per_epoch == 0:
            raise ValueError("the training loader yields no batch: too few samples for one batch")
        start_epoch, best, best_epoch, seconds_before = 0, None, 0, 0.0
        state = None
        if resume:  # the time budget and the schedule go on from the time the checkpointed epochs took
            state = self._resume()
            start_epoch, best, best_epoch = state["epoch"], state["best"], state["best_epoch"]
            seconds_before = float(state.get("seconds", 0.0))
        else:
            split_random_streams(self.dist)
        last_epoch = self.epochs
        stopped_by_time = bool(self.time_budget_s) and seconds_before >= self.time_budget_s
        if stopped_by_time:
            last_epoch = start_epoch  # resumed after the budget ran out: nothing to do
        going_on = start_epoch < last_epoch
        if self.dist.is_main:
            if going_on and before_write is not None:
                before_write()
            if state is not None:
                self._restore_files(state, "no" if going_on else "epochs" if start_epoch >= self.epochs else "time")
            # left by a killed run, also one started anew (killed writing its first checkpoint)
            remove_temporaries(self.output_dir)
        total_steps = self.epochs * steps_per_epoch
        result = FitResult(epochs_run=start_epoch, best_epoch=best_epoch, best_metric=best,
                           stopped_by_time=stopped_by_time, max_epochs=self.epochs)
        t_start = time.perf_counter() - seconds_before
        timed_images, timed_seconds = 0, 0.0  # this session's, as log.csv's images_per_s counts them
        for epoch in range(start_epoch + 1, last_epoch + 1):
            sampler = getattr(loader, "batch_sampler", None)
            for obj in (sampler, getattr(loader, "sampler", None)):
                if hasattr(obj, "set_epoch"):
                    obj.set_epoch(epoch)
            self.ddp_model.train()
            self.unreadable.count = 0
            sums: dict[str, torch.Tensor] = {}
            steps = 0
            t_epoch = time.perf_counter()
            epoch_images = 0
            stop = False
            # a loader draws its workers' seed from the global stream when they start, which persistent workers do in
            # a session's first epoch only: a resumed run would draw where the uninterrupted one did not. So the loader
            # draws from a stream of the epoch's own, seeded from the global one, which it leaves as it was: a
            # shuffling sampler, which draws there too when workers start, then draws other batches each epoch, also
            # when training draws no random number
            with torch.random.fork_rng(devices=[]):
                entropy = int(torch.randint(2**62, (), dtype=torch.int64))
                torch.default_generator.manual_seed(int(np.random.SeedSequence([entropy, epoch]).generate_state(1)[0]))
                batches = iter(loader)
            bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{self.epochs}", leave=False,
                       disable=self.quiet or not self.dist.is_main, dynamic_ncols=True)
            for batch in bar:
                self.unreadable.note_batch(batch)
                step = (epoch - 1) * steps_per_epoch + steps
                progress = step / total_steps
                if self.time_budget_s:
                    progress = max(progress, self._elapsed(t_start) / self.time_budget_s)
                factor = lr_factor(min(progress, 1.0), self.warmup, self.lr_schedule)
                for group in self.optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor
                cause = None
                try:
                    with torch.autocast(self.device.type, enabled=self.amp):
                        terms = task.train_step(self.ddp_model, batch, self.device)
                except NonFiniteError as e:  # a loss refused its NaN/Inf inputs (a diverged model): same as a NaN loss
                    cause, terms = str(e), {"loss": torch.tensor(math.nan)}
                loss = terms["loss"]
                over_time = bool(self.time_budget_s) and time.perf_counter() - t_start > self.time_budget_s
                flags = all_reduce_max(torch.tensor([float(not torch.isfinite(loss.detach()).item()), float(over_time)],
                                                    device=self.device), self.dist)  # NCCL reduces CUDA tensors only
                if flags[0] > 0:
                    raise self._non_finite("loss" if cause is None else f"loss ({cause})", epoch, steps + 1, terms)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if not self.amp:  # with AMP the scaler itself skips steps whose gradients hold Inf/NaN
                    grads = [p.grad for p in self.model.parameters() if p.grad is not None]
                    if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                        raise self._non_finite("gradient", epoch, steps + 1, terms)  # DDP: same gradients on all ranks
                if self.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                for k, v in terms.items():
                    sums[k] = sums.get(k, torch.zeros((), device=self.device)) + v.detach().float()
                steps += 1
                epoch_images += task.batch_size(batch)
                if steps % 10 == 0 or steps == 1:
                    bar.set_postfix(loss=f"{float(sums['loss']) / steps:.4f}")  # float(): the step has run (CUDA)
                if steps == 1:
                    t_first, first_images = time.perf_counter(), epoch_images
                if flags[1] > 0:
                    stop = True
                    break
            bar.close()
            t_end = time.perf_counter()
            seconds = t_end - t_epoch
            means = all_reduce_sum(torch.stack([sums[k] / max(steps, 1) for k in sorted(sums)]),
                                   self.dist) / self.dist.world_size
            row: dict[str, Any] = {"epoch": epoch, **{column: group["lr"] for column, group
                                                       in zip(self.lr_columns, self.optimizer.param_groups)}}
            # significant digits, not decimals: a loss term of 1e-7 is not logged as 0
            row.update({f"train_{k}": float(f"{float(v):.6g}") for k, v in zip(sorted(sums), means)})
            row["seconds"] = round(seconds, 2)
            # the rate after the epoch's first step (the loader's start, first-batch compilation), which seconds holds
            timed, images = (t_end - t_first, epoch_images - first_images) if steps > 1 else (seconds, epoch_images)
            row["images_per_s"] = round(images * self.dist.world_size / max(timed, 1e-9), 2)
            timed_images, timed_seconds = timed_images + images, timed_seconds + timed
            broadcast_buffers(self.model, self.dist)
            gathered = gather_to_main((rng_state(), self.unreadable.count, self.unreadable.files), self.dist)
            if self.dist.is_main:
                assert gathered is not None
                rank_streams = [streams for streams, _, _ in gathered]
                for _, count, files in gathered[1:]:
                    self.unreadable.count += count
                    self.unreadable.files.update((f, p) for f, p in files.items() if f not in self.unreadable.files)
                self.ddp_model.eval()  # the weight average, if any, is always in eval mode
                metrics = task.validate(self.eval_model)
                if metrics and self.select_metric not in metrics:  # else the newest epoch would silently be the best
                    raise ValueError(f"select_metric '{self.select_metric}' is not among the validation metrics "
                                     f"({', '.join(metrics)}): the best epoch cannot be chosen on it")
                set_rng_state(rank_streams[0])  # validation must not move the streams last.pt saves for resuming
                row.update({f"val_{k}": round(float(v), 4) for k, v in metrics.items()})
                row["unreadable"] = self.unreadable.count  # training items replaced, validation images left out
                value = row.get(f"val_{self.select_metric}")  # as log.csv holds it: its best row is the best model's
                if value is not None and math.isnan(value):
                    value = None  # e.g. J when every validation mask is empty: nothing to select on
                improved = value is not None and self._is_better(value, best)
                if improved:
                    best, best_epoch = float(value), epoch
                elif value is None and best is None:
                    improved = True  # nothing to select on yet: the newest model is the best one we know
                    best_epoch = epoch
                # the row first: a run killed before the checkpoint is written resumes from the older one and drops it
                try:
                    self.log.append(row)
                    spent = time.perf_counter() - t_start
                    # a budget its validation spent ends the run with this epoch, as a resume from it would
                    stop = stop or bool(self.time_budget_s) and spent >= self.time_budget_s and epoch < self.epochs
                    finished = "time" if stop else "epochs" if epoch == self.epochs else "no"
                    self._save(epoch, best, best_epoch, metrics, spent, rank_streams, finished)
                except OSError as e:
                    raise self._write_failed(epoch, e) from e
                if not self.quiet:
                    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                                     if k != "epoch" and not (k == "unreadable" and v == 0))  # log.csv: every digit
                    tqdm.write(f"epoch {epoch}: {shown}")
            barrier(self.dist)
            if self.time_budget_s:  # rank 0's decision, which its checkpoint records
                stop = bool(all_reduce_max(torch.tensor(float(stop), device=self.device), self.dist))
            result.history.append(row)
            result.epochs_run = epoch
            if stop:
                result.stopped_by_time = True
                break
        result.best_metric, result.best_epoch = best, best_epoch
        result.seconds = time.perf_counter() - t_start
        result.train_seconds = timed_seconds
        result.images_per_s = timed_images * self.dist.world_size / max(timed_seconds, 1e-9)
        result.unreadable = list(self.unreadable.files.items())
        return result
