# The normalization study's default task (deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py) with
# one change: the ASPP image-pooling branch, whose norm sees 1x1 features (one value per channel
# and image), has a norm of its own, GroupNorm (8 groups) + the head's conv (PoolNormASPPHead,
# mmbcn/models/decode_heads/pool_norm_aspp_head.py). The study swaps `norm_cfg` keys only, so
# that branch stays GN for every preset, and every other norm of the model gets the preset's:
# the same rule for all. `make study-other` runs it; GN+WS here (the file's own norm) is only
# what the config builds before a swap.
_base_ = './deeplabv3_r18-d8_bcn-ws_2xb1-study-demo-shapes.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.models.decode_heads.pool_norm_aspp_head'],
                      allow_failed_imports=False)

# _delete_: the base's BCN cfg goes, not merged
norm_cfg = dict(_delete_=True, type='GN', num_groups=8, requires_grad=True)
conv_cfg = dict(type='WSConv2d')
model = dict(
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    decode_head=dict(type='PoolNormASPPHead', norm_cfg=norm_cfg, conv_cfg=conv_cfg,
                     image_pool_norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    auxiliary_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg))
custom_hooks = [dict(type='NormStatisticsHook', interval=50)]
