"""One BCN norm_cfg for every width: mmseg's DeepLabV3+ and mmdet's RTMDet as their zoo has them."""

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config

from mmbcn import BatchChannelNorm2d
from mmbcn.utils.config_files import build_model

BCN = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
ZOO = {
    'deeplabv3plus': 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'rtmdet': 'mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py',
}


def with_norm(node, norm_cfg):
    """The config tree with every ``norm_cfg`` replaced by ``norm_cfg``."""
    if isinstance(node, dict):
        return {k: dict(norm_cfg) if k == 'norm_cfg' and v is not None else with_norm(v, norm_cfg)
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(with_norm(v, norm_cfg) for v in node)
    return node


def build_with(name, norm_cfg):
    cfg = get_config(ZOO[name])
    cfg.model = Config(with_norm(cfg.model.to_dict(), norm_cfg))._cfg_dict
    cfg.model.pop('pretrained', None)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    return build_model(cfg)


def head_outputs(name, model, x):
    features = model.extract_feat(x)
    if name == 'deeplabv3plus':
        return [model.decode_head(features)]
    cls_scores, box_preds = model.bbox_head(features)
    return [*cls_scores, *box_preds]


@pytest.mark.parametrize('name', ZOO)
def test_one_norm_cfg_serves_every_width_with_at_most_rule(name):
    with pytest.raises(ValueError, match="not divisible by num_groups=32.*group_rule='at_most'"):
        build_with(name, BCN)  # the zoo models have widths 32 does not divide
    model = build_with(name, dict(BCN, group_rule='at_most'))
    norms = [m for m in model.modules() if isinstance(m, BatchChannelNorm2d)]
    widths = {m.num_features for m in norms}
    assert norms and any(c % 32 for c in widths)  # some layer needed the rule
    for m in norms:  # G: the largest divisor of C not above 32
        assert m.num_features % m.num_groups == 0 and m.num_groups <= 32
        assert not any(m.num_features % g == 0 for g in range(m.num_groups + 1, 33)), (
            m.num_features, m.num_groups)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    loss = sum(out.float().square().mean() for out in head_outputs(name, model, x))
    loss.backward()
    grads = [p.grad for m in norms for p in (m.weight, m.group_weight) if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert all(torch.isfinite(out).all() for out in head_outputs(name, model, x))
