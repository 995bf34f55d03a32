"""Group statistics leave the BatchNorm statistics a module keeps frozen in training as they are: the semantic prior's
(its classifier head's and, with ``frozen_prior``, its frozen ImageNet encoder's), whose class maps are meant not to
drift. Was: every BatchNorm layer of the model was adapted to the group, so with ``frozen_prior`` the prior's maps
and class probabilities changed with ``--group-statistics`` (measured on iCoseg with the ImageNet weights: a group
of brown bears' top class probability fell from 0.71 to 0.11)."""
from __future__ import annotations

import torch
from torch import nn

from coseg.models import GroupStatistics, create_model
from coseg.models.group_statistics import adaptable_layers


def prior_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("unet", weights=None, embedding_dim=8, group_levels=2, semantic_prior=True,
                        frozen_prior=True).eval()


def test_the_frozen_prior_s_statistics_are_not_adapted_to_the_group():
    model = prior_model()
    prior = [m for m in model.semantic_prior.modules() if isinstance(m, nn.BatchNorm2d)]
    assert prior and all(m.running_mean.abs().sum() == 0 for m in prior)  # untrained: a shift would show
    adapted = {id(m) for m in adaptable_layers(model)}
    assert adapted and not adapted & {id(m) for m in prior}
    images = torch.rand(3, 3, 64, 64)
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (module.running_mean.clone(), module.training)
        return hook

    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(keep(names[m])) for m in prior]
    try:
        model.predict_group(images, statistics=GroupStatistics(0))
    finally:
        for hook in hooks:
            hook.remove()
    assert seen and all(mean.abs().sum() == 0 and not training for mean, training in seen.values())
    assert all(not m.training for m in model.modules())  # modes restored (the model was in eval mode)


def test_the_model_s_other_layers_are_still_adapted():
    model = prior_model()
    layers = adaptable_layers(model)
    encoder = [m for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert encoder and {id(m) for m in encoder} <= {id(m) for m in layers}
    model.train()
    assert {id(m) for m in adaptable_layers(model)} == {id(m) for m in layers}
    assert all(m.training for m in layers)  # modes left as they were: train
