"""The training engine shared by the co-segmentation and retrieval trainers."""
from coseg.engine.checkpoint import CheckpointError, load_training_state, save_training_state
from coseg.engine.config import (
    ConfigError, check_at_least, check_choice, check_fraction, check_one_validation_choice, check_seed,
    config_from_dict, config_to_dict, load_config, read_config_file, save_config, usage_errors,
)
from coseg.engine.distributed import DistInfo, cleanup_distributed, distributed_run, resolve_device, setup_distributed
from coseg.engine.ema import weight_ema
from coseg.engine.optim import adamw
from coseg.engine.run_folder import RESUMABLE, RunFolder, once
from coseg.engine.run_lock import training_lock
from coseg.engine.trainer import Engine, FitResult, NonFiniteLossError, TrainTask, lr_factor

__all__ = [
    "CheckpointError", "ConfigError", "DistInfo", "Engine", "FitResult", "NonFiniteLossError", "RESUMABLE",
    "RunFolder", "TrainTask", "adamw", "check_at_least", "check_choice", "check_fraction",
    "check_one_validation_choice", "check_seed", "cleanup_distributed", "config_from_dict", "config_to_dict",
    "distributed_run", "load_config", "load_training_state", "lr_factor", "once", "read_config_file", "resolve_device",
    "save_config", "save_training_state",
    "setup_distributed", "training_lock", "usage_errors", "weight_ema",
]
