"""Audit s10: GroupStatistics.adapted on a model some of whose BatchNorm layers the measuring pass does not run."""
import torch
from torch import nn

from coseg.models import GroupStatistics


def test_a_layer_the_measure_does_not_run_keeps_its_statistics():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        for bn in (net[1], net[3]):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(4, 3, 8, 8)
    stored = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in (net[1], net[3])]
    w = GroupStatistics(8.0).prior_weight(4)
    with GroupStatistics(8.0).adapted(net, lambda: net[:2](x), 4):
        group = net[0](x).transpose(0, 1).flatten(1)  # (C, N·H·W) of the measured layer
        torch.testing.assert_close(net[1].running_mean, w * stored[0][0] + (1 - w) * group.mean(1))
        torch.testing.assert_close(net[1].running_var, w * stored[0][1] + (1 - w) * group.var(1))
        # the layer the measure never reached: its own statistics, not a blend with mean 0 and variance 1
        torch.testing.assert_close(net[3].running_mean, stored[1][0])
        torch.testing.assert_close(net[3].running_var, stored[1][1])
    for bn, (mean, var) in zip((net[1], net[3]), stored):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
