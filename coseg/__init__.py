"""Co-segmentation: data layouts, model, objective, trainer, evaluation, prediction."""
