"""Co-segmentation model (encoder → decoder → mask + pixel-embedding heads), its weights and model files."""
from coseg.models.checkpoint import checkpoint_metadata
from coseg.models.cosegnet import ARCHITECTURES, DEFAULT_ENCODER, CosegNet, CosegOutput, create_model
from coseg.models.colour_cut import GroupColourCut
from coseg.models.edge_filter import EdgeFilter
from coseg.models.embedding_head import EmbeddingHead
from coseg.models.ensemble import CosegEnsemble
from coseg.models.group_statistics import GroupStatistics, GroupTooSmall
from coseg.models.model_file import Model, load_ensemble, load_model
from coseg.models.refinement import GroupRefinement
from coseg.models.pretrained import (IMAGENET_WEIGHT_SOURCES, encoder_normalization, load_encoder_weights,
                                     load_imagenet_state_dict, load_timm_weights, load_weights_file,
                                     offline_encoders)

__all__ = [
    "ARCHITECTURES", "DEFAULT_ENCODER", "IMAGENET_WEIGHT_SOURCES", "CosegEnsemble", "CosegNet", "CosegOutput",
    "EdgeFilter", "EmbeddingHead", "GroupColourCut", "GroupRefinement", "GroupStatistics", "GroupTooSmall", "Model",
    "checkpoint_metadata", "create_model", "encoder_normalization", "load_encoder_weights", "load_imagenet_state_dict",
    "load_ensemble", "load_model", "load_timm_weights", "load_weights_file", "offline_encoders",
]
