# Proxy Normalization on the Mask R-CNN R18-FPN demo (../demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-
# shapes.py, CPU): the backbone is mmbcn's ProxyNormResNet (GroupNorm without affine +
# ProxyNormAct wherever a ReLU followed a norm, the last norm of each block plain GroupNorm, plain
# ReLU after the sum: configs/proxy_norm/README.md); FPN and RoI heads plain GroupNorm; plain convs.
_base_ = '../demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.models.backbones.mmdet_resnet'],
                      allow_failed_imports=False)

# _delete_: the base's BCN cfg goes, not merged
norm_cfg = dict(_delete_=True, type='GN', num_groups=8, requires_grad=True)
model = dict(
    backbone=dict(type='ProxyNormResNet', norm_cfg=norm_cfg, conv_cfg=None,
                  proxy_cfg=dict(num_samples=200, eps=0.03)),
    neck=dict(norm_cfg=norm_cfg, conv_cfg=None),
    roi_head=dict(bbox_head=dict(norm_cfg=norm_cfg, conv_cfg=None),
                  mask_head=dict(norm_cfg=norm_cfg, conv_cfg=None)))
custom_hooks = [dict(type='NormStatisticsHook', interval=50)]  # no BCN: no rate hook
