"""Result folders for the report tests: a training run (log.csv, config.yaml, a small random-weight model) and
a synthetic data set whose group names need HTML escaping."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

import torch
import yaml

from coseg.data import find_samples, make_synthetic_coseg
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.models import create_model
from coseg.report.files import PREDICTIONS
from tests.coseg.pipeline_fixtures import ConstantModel

# Group names a report must escape: markup, ampersands, both quotes, spaces.
AWKWARD_GROUPS = ['<b>bold</b> & "quoted"', "it's a <script>alert(1)</script>", "plain group"]

LOG = """epoch,lr,train_ce,train_dice,train_loss,train_triplet,seconds,images_per_s,val_P,val_J
1,0.0009,0.50,0.58,1.54,0.94,10.1,3.0,81.6,45.7
2,0.0007,0.25,0.32,0.85,0.54,10.2,3.1,86.3,60.1
3,0.0004,0.23,0.28,0.71,0.41,10.0,3.2,88.2,58.6
"""


def awkward_set(root: Path, images: int = 3, size: int = 64) -> Path:
    """iCoseg layout, 3 groups named :data:`AWKWARD_GROUPS`, ``images`` each; splits.json key ``all``."""
    return make_synthetic_coseg(root, num_groups=len(AWKWARD_GROUPS), images_per_group=images, size=size, seed=0,
                                group_names=AWKWARD_GROUPS)


def run_files(run: Path, image_size: int = 64) -> Path:
    """``run/log.csv`` (3 epochs, best J at epoch 2) and ``run/config.yaml`` (a value needing escaping)."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.csv").write_text(LOG)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": "<my data> & more", "image_size": image_size}))
    return run


def training_run(run: Path, image_size: int = 64) -> Path:
    """:func:`run_files` and a random-weight model ``run/best.safetensors`` (no ImageNet weights); returns the
    model file."""
    run_files(run, image_size)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    model.save(run / "best.safetensors", metadata={"image_size": str(image_size)})
    return run / "best.safetensors"


class PageParser(HTMLParser):
    """The pieces of a report page the tests look at: image sources, external references, and the text of each
    table's cells by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.scripts = 0
        self._table: Optional[str] = None
        self._cell: Optional[list[str]] = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if "//" in (values.get(name) or ""):
                self.external.append(values[name])
        if tag == "img":
            self.images.append(values["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self._table = values.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def evaluation_folder(root: Path) -> Path:
    """``root/run`` (a training run) holding ``eval/``: the evaluation of :func:`awkward_set` by a model predicting
    foreground everywhere (J = each mask's foreground share, so images differ), with its predicted masks; its
    summary names ``run/best.safetensors`` as the checkpoint. Returns the evaluation folder."""
    data = awkward_set(root / "data")
    run = run_files(root / "run")
    output = run / "eval"
    scan = find_samples(data, "icoseg")
    evaluation = evaluate_samples(ConstantModel(0.9), scan.samples, 64, torch.device("cpu"), progress=False,
                                  predictions=output / PREDICTIONS)
    evaluation.summary["checkpoint"] = str(run / "best.safetensors")
    write_evaluation(evaluation, output)
    return output
