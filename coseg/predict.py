"""``coseg predict``: masks for a folder of images (subfolders = groups), at each image's own size."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from coseg.atomic import remove_temporaries, write_bytes_atomic
from coseg.data import encode_png, find_samples, printable, read_image
from coseg.inference import group_ids, images_for, predict_dataset, spare_cpu
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, Model
from metric.threads import single_threaded_pool


@dataclass
class PredictReport:
    output: Path
    written: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_path(output: Path, relative: Path) -> Path:
    """``output/<relative>.png``, refusing any path that would land outside ``output``."""
    target = (output / relative).with_suffix(".png")
    if ".." in relative.parts or relative.is_absolute() or not _inside(target, output):
        raise ValueError(f"{printable(relative)}: output path would leave the output folder")
    return target


RED = (255, 40, 40)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
            colour: tuple[int, int, int] = RED) -> np.ndarray:
    """RGB image with the foreground tinted ``colour`` (RGB) and the rest darkened: (H, W, 3) uint8."""
    out = image.astype(np.float32) * np.where(mask[..., None], 1.0, 0.45)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def predict_folder(model: Model, image_size: int, input_dir: Path, output_dir: Path, device: torch.device,
                   batch_size: int = 8, workers: int = 0, overlays: Optional[Path] = None, overwrite: bool = False,
                   progress: bool = True, group_mode: bool = True,
                   refinement: Optional[GroupRefinement] = None, flip: bool = False,
                   edges: Optional[EdgeFilter] = None, colour: Optional[GroupColourCut] = None,
                   statistics: Optional[GroupStatistics] = None) -> PredictReport:
    """Write ``output_dir/<relative path>.png`` (0/255 mask at the input's size) for every image under
    ``input_dir``. Each subfolder is a group (a flat folder is one group) predicted together when ``group_mode``;
    a group larger than ``batch_size`` is processed in chunks that share its consensus. Masks already written are
    kept (an interrupted run resumes, and removes the temporary files a killed run left) unless ``overwrite``; files
    that cannot be read are skipped and listed. ``refinement``, ``flip``, ``edges``, ``colour`` and
    ``statistics``: as in :func:`~coseg.inference.predict_dataset`.
    Nothing is ever written inside ``input_dir``."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise ValueError(f"{printable(input_dir)}: input folder not found")
    for target in (output_dir, overlays):
        if target is not None and _inside(target, input_dir):
            raise ValueError(f"{printable(target)} is inside the input folder {printable(input_dir)}: choose an "
                             "output folder elsewhere (predict never writes into its input)")
    for target in (output_dir, overlays):
        if target is not None:
            remove_temporaries(target)  # left by a killed run
    scan = find_samples(input_dir, "folders")
    report = PredictReport(output=output_dir)
    todo, todo_samples = [], []
    for sample in scan.samples:
        target = output_path(output_dir, sample.image.relative_to(input_dir))
        if target.exists() and not overwrite:
            report.already_done += 1
        else:
            todo.append((sample.image, target))
            todo_samples.append(sample)
    dataset = images_for([image for image, _ in todo], image_size, colour)
    groups = group_ids(todo_samples) if group_mode else None
    bar = tqdm(total=len(todo), desc="predicting", unit="img", disable=not progress, leave=False)
    # The atomic writes (mostly waiting for fsync) always run in a background thread while the model goes on; PNG
    # encoding runs there too only with a core to spare, since where the model fills every core it would only
    # compete with it.
    spare = spare_cpu(device)
    with single_threaded_pool(WRITER_THREADS if spare else 1) as writer:
        pending: deque[Future] = deque()
        for index, result in predict_dataset(model, dataset, device, batch_size, workers, original_size=True,
                                             groups=groups, refinement=refinement, flip=flip, edges=edges,
                                             colour=colour, statistics=statistics):
            bar.update(1)
            image_path, target = todo[index]
            if isinstance(result, str):
                report.skipped.append((printable(image_path), result))
                continue
            tinted = None if overlays is None else output_path(overlays, image_path.relative_to(input_dir))
            if spare:
                pending.append(writer.submit(_write_outputs, result, target, image_path, tinted))
            else:
                pending.append(writer.submit(_write_files, _encoded_outputs(result, target, image_path, tinted)))
            report.written += 1
            if len(pending) > MAX_PENDING_WRITES:
                pending.popleft().result()  # a failed write raises here; and the backlog stays bounded
        for job in pending:
            job.result()
    bar.close()
    return report


WRITER_THREADS = 2
MAX_PENDING_WRITES = 64


def _encoded_outputs(mask: np.ndarray, target: Path, image_path: Path,
                     overlay_target: Optional[Path]) -> list[tuple[Path, bytes]]:
    """The PNG files to write for one image: its mask, and its overlay if asked for."""
    files = [(target, encode_png(mask, target))]
    if overlay_target is not None:
        files.append((overlay_target, encode_png(overlay(read_image(image_path), mask), overlay_target)))
    return files


def _write_files(files: list[tuple[Path, bytes]]) -> None:
    for path, data in files:
        write_bytes_atomic(path, data)


def _write_outputs(mask: np.ndarray, target: Path, image_path: Path, overlay_target: Optional[Path]) -> None:
    _write_files(_encoded_outputs(mask, target, image_path, overlay_target))
