# Proxy Normalization on the DeepLabV3 R18-D8 demo (../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-
# shapes.py: generated shapes in VOC layout, CPU): the backbone is mmbcn's ProxyNormResNetV1c
# (each norm followed by a ReLU becomes GroupNorm without affine + ProxyNormAct; the last norm of
# each block plain GroupNorm; a plain ReLU after the residual sum: configs/proxy_norm/README.md),
# the heads plain GroupNorm, convs plain (the paper pairs PN with GN or LN, without WS).
_base_ = '../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.models.backbones.mmseg_resnet'],
                      allow_failed_imports=False)

# _delete_: the base's BCN cfg goes, not merged
norm_cfg = dict(_delete_=True, type='GN', num_groups=8, requires_grad=True)
# the authors' defaults (K = 200 Gaussian quantiles, eps = 0.03), spelled out
proxy_cfg = dict(act_cfg=dict(type='ReLU'), num_samples=200, eps=0.03)
model = dict(
    backbone=dict(type='ProxyNormResNetV1c', norm_cfg=norm_cfg, conv_cfg=None,
                  proxy_cfg=proxy_cfg),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=None),
    auxiliary_head=dict(norm_cfg=norm_cfg, conv_cfg=None))
custom_hooks = [dict(type='NormStatisticsHook', interval=50)]  # no BCN: no rate hook
