"""BCN's forward and backward through the real autograd Function on a given backend."""

from unittest import mock

from mmbcn.ops import batch_channel_norm, function


def run_on_backend(backend, x, upstream, params, running, num_groups, training, estimate,
                   synchronize=False, estimate_rule='authors', rate=0.1):
    """``[out, dL/dx, running_mean, running_var, *parameter grads]`` of one step on ``backend``.

    ``params`` (w, b, gw, gb, any None) and ``running`` are copied, so calls do not interact.
    """
    leaf = x.detach().clone().requires_grad_()
    params = [None if p is None else p.detach().clone().requires_grad_() for p in params]
    running_mean, running_var = (r.clone() for r in running)
    with mock.patch.object(function, 'choose_backend', lambda *_: backend):
        out = batch_channel_norm(leaf, running_mean, running_var, *params, num_groups, training,
                                 estimate, rate, 1e-5, synchronize=synchronize,
                                 estimate_rule=estimate_rule)
    (out * upstream).sum().backward()
    return [out.detach(), leaf.grad, running_mean, running_var,
            *(p.grad for p in params if p is not None)]


def relative_errors(got, want):
    """max |got - want| / max |want| for each pair, in float64 (as many of each)."""
    assert len(got) == len(want), (len(got), len(want))
    return [((g.double() - w.double()).abs().max()
             / w.double().abs().max().clamp_min(1e-6)).item()
            for g, w in zip(got, want, strict=True)]
