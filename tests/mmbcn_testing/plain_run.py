"""A training mode against the plain run: the same model, weights and data, trained both ways;
every gradient and buffer compared after each step."""

import copy
from typing import Callable, Optional

import torch

# float64 runs of the same sums in the same order agree to rounding.
FLOAT64 = dict(rtol=1e-10, atol=1e-12)


def batches(shape, steps, dtype=torch.float64, seed=0):
    """``steps`` (input, target-projection) pairs of a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=generator, dtype=dtype) * 2 + 1,
             torch.randn(shape[1:2], generator=generator, dtype=dtype))
            for _ in range(steps)]


def loss_of(outputs, projection):
    """A loss that reaches every output (a tensor, or a tuple of feature maps) and every channel
    differently: each map's squared mean plus its channel means against a fixed projection."""
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    total = 0
    for out in outputs:
        channels = out.shape[1]
        weights = projection.repeat(channels // projection.numel() + 1)[:channels]
        total = total + out.square().mean() + (out.mean((0, 2, 3)) * weights.to(out)).sum()
    return total


def training_states(model: torch.nn.Module, data, forward: Optional[Callable] = None,
                    lr: float = 0.05):
    """Gradients and buffers after each SGD step over ``data``; ``forward(model, x)``."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    states = []
    for x, projection in data:
        optimizer.zero_grad()
        out = model(x) if forward is None else forward(model, x)
        loss_of(out, projection).backward()
        states.append(state_of(model))
        optimizer.step()
    return states


def state_of(model: torch.nn.Module):
    return dict(grads={n: None if p.grad is None else p.grad.clone()
                       for n, p in model.named_parameters()},
                buffers={n: b.clone() for n, b in model.named_buffers()})


def assert_same_states(states, expected, **tolerance):
    """Every gradient and buffer of every step equal (``tolerance``: float64's by default)."""
    tolerance = tolerance or FLOAT64
    assert len(states) == len(expected)
    for step, (state, reference) in enumerate(zip(states, expected, strict=True)):
        for kind in ('grads', 'buffers'):
            assert state[kind].keys() == reference[kind].keys()
            for name, value in state[kind].items():
                if value is None or reference[kind][name] is None:
                    assert value is reference[kind][name], f'step {step}, {name}'
                    continue
                where = f'step {step}, {kind} {name}'
                torch.testing.assert_close(value, reference[kind][name], **tolerance,
                                           msg=lambda m, where=where: f'{where}: {m}')


def twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with the same weights and buffers."""
    return copy.deepcopy(model)
