"""BCN layers in each mode with non-trivial parameters, and their float64 reference."""

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmbcn import BatchChannelNorm2d

from .reference import bcn_reference

# 'micro' is micro-batch mode with the authors' rule, 'micro-batch-variance' with the other one.
MODES = ['large', 'micro', 'micro-batch-variance', 'eval']
ESTIMATE_RULE_OF_MODE = {'micro': 'authors', 'micro-batch-variance': 'batch_variance'}


def make_layer(num_features, num_groups, mode, rate=0.3):
    rule = ESTIMATE_RULE_OF_MODE.get(mode, 'authors')
    layer = BatchChannelNorm2d(num_features, num_groups, momentum=rate,
                               estimate=mode in ESTIMATE_RULE_OF_MODE, estimate_rule=rule)
    with torch.no_grad():  # non-trivial parameters and statistics
        for tensor in (layer.weight, layer.bias, layer.group_weight, layer.group_bias):
            tensor.copy_(torch.randn_like(tensor) * 0.5 + (1.0 if tensor.dim() else 0.0))
        layer.running_mean.copy_(torch.randn(num_features))
        layer.running_var.copy_(torch.rand(num_features) + 0.5)
    layer.train(mode != 'eval')
    return layer


def reference_of(layer, x, mode):
    params = {
        name: getattr(layer, name).detach().double().requires_grad_()
        for name in ('weight', 'bias', 'group_weight', 'group_bias')
    }
    out, new_mean, new_var = bcn_reference(
        x, params, layer.num_groups, 'micro' if mode in ESTIMATE_RULE_OF_MODE else mode,
        layer.running_mean.double().clone(), layer.running_var.double().clone(), layer.momentum,
        layer.eps, estimate_rule=layer.estimate_rule)
    return out, new_mean, new_var, params


def randomize_bcn(model):
    """Non-trivial statistics and affine parameters of every BCN and BatchNorm layer, so that
    folding has something to fold; returns the model in eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
            if isinstance(module, BatchChannelNorm2d):
                module.group_weight.uniform_(0.5, 1.5)
                module.group_bias.normal_(0, 0.1)
    model.eval()
    return model
