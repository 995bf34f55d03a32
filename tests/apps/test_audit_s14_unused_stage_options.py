"""Options of a stage or head start the run does not have were ignored without a word: --finetune-minutes without
--finetune-epochs (no fine-tuning stage), --head-passes or --feature-views in mode end_to_end (no head stage),
--whiten-shrinkage with another head start than class_whiten. They are usage errors naming the option."""
from __future__ import annotations

import pytest

from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.train import check_config
from coseg.engine import ConfigError


@pytest.mark.parametrize("changes, message", [
    ({"finetune_minutes": 8.0}, r"--finetune-minutes 8.0: the fine-tuning stage trains for --finetune-epochs, 0 "
                                r"\(none\) here: give them too"),
    ({"mode": "end_to_end", "head_passes": 3}, "--head-passes 3: options of the head stage on cached features of mode "
                                               "staged, which mode end_to_end has not"),
    ({"mode": "end_to_end", "feature_views": 1, "head_passes": 2}, "--head-passes 2, --feature-views 1: options of "
                                                                   "the head stage"),
    ({"whiten_shrinkage": 2.0, "head_init": "pca_whiten"}, "--whiten-shrinkage 2.0: the shrinkage of --head-init "
                                                           "class_whiten, not of pca_whiten"),
])
def test_an_option_the_run_does_not_use_is_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        check_config(RetrievalTrainConfig(data="d", weights="none", **changes))


@pytest.mark.parametrize("changes", [
    {"finetune_minutes": 8.0, "finetune_epochs": 20}, {"finetune_minutes": 0.0},
    {"mode": "end_to_end", "head_passes": 1, "feature_views": 2},  # the defaults: as if not given
    {"whiten_shrinkage": 2.0, "head_init": "class_whiten"}, {"head_passes": 3, "feature_views": 4},
])
def test_the_options_of_the_runs_stages_are_taken(changes: dict) -> None:
    check_config(RetrievalTrainConfig(data="d", weights="none", **changes))
