# Proxy Normalization on the ResNet-18 pretraining demo
# (../demo/resnet18_bcn-ws_1xb16-demo-shapes.py, CPU): mmbcn's ProxyNormResNet in mmpretrain
# (GroupNorm without affine + ProxyNormAct wherever a ReLU followed a norm, the last norm of each
# block plain GroupNorm, zero-initialized as the demo's; plain ReLU after the sum:
# configs/proxy_norm/README.md); plain convs.
_base_ = '../demo/resnet18_bcn-ws_1xb16-demo-shapes.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.datasets.checked_imagenet',
                               'mmbcn.models.backbones.mmpretrain_resnet'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(type='ProxyNormResNet', norm_cfg=dict(_delete_=True, type='GN', num_groups=8,
                                                        requires_grad=True),
                  conv_cfg=None, proxy_cfg=dict(num_samples=200, eps=0.03)))
