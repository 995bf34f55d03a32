"""coseg.engine.adamw: fused AdamW where torch has it, the same updates as the multi-tensor AdamW."""
import torch

from coseg.engine import adamw


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((5, 3), (7,), (2, 3, 4))]


def test_fused_on_cpu_and_same_updates_as_foreach():
    ours, reference = _params(0), _params(0)
    opt = adamw([{"params": ours[:2], "lr": 1e-2}, {"params": ours[2:], "lr": 1e-3}], lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW([{"params": reference[:2], "lr": 1e-2}, {"params": reference[2:], "lr": 1e-3}],
                            lr=1e-2, weight_decay=0.1, foreach=True)
    assert opt.defaults["fused"] is True
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-3]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for a, b in zip(ours, reference):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        opt.step()
        ref.step()
    for a, b, start in zip(ours, reference, _params(0)):
        assert not torch.equal(a, start)  # the steps moved it
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_falls_back_to_foreach_where_fused_has_no_kernel():
    complex_param = torch.nn.Parameter(torch.randn(4, dtype=torch.complex64))
    opt = adamw([{"params": [complex_param]}], lr=1e-3, weight_decay=0.0)
    assert not opt.defaults["fused"] and opt.defaults["foreach"]
    complex_param.grad = torch.ones_like(complex_param)
    opt.step()  # a fused optimizer would raise here
