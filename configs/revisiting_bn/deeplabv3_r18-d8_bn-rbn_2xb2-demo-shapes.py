# The Revisiting-BN recipe (Davis and Frank, arXiv:2110.13989) with BatchNorm on the DeepLabV3
# R18-D8 demo (../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py, CPU): BN everywhere, plain
# convs, and the recipe's three parts (configs/revisiting_bn/README.md):
# every norm's scale starts at 0.1 (RevisitingBNInit, after every other init of the model,
# residual zero-init included), norm scales at lr / 100 without weight decay and every other 1-d
# parameter without weight decay (RevisitingBNOptimWrapperConstructor), and a BatchNorm over the
# image channels (scale 0.1 x 0.58, bias frozen at 0) instead of the fixed mean/std.
_base_ = '../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

# _delete_: the base's BCN cfg goes, not merged
norm_cfg = dict(_delete_=True, type='BN', requires_grad=True)
crop_size = (64, 64)
model = dict(
    init_cfg=[dict(type='RevisitingBNInit', scale=0.1)],
    data_preprocessor=dict(
        _delete_=True, type='InputNormDataPreprocessor', scale=0.1,
        preprocessor=dict(type='SegDataPreProcessor', mean=None, std=None, bgr_to_rgb=True,
                          pad_val=0, seg_pad_val=255, size=crop_size)),
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=None),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=None),
    auxiliary_head=dict(norm_cfg=norm_cfg, conv_cfg=None))
optim_wrapper = dict(constructor='RevisitingBNOptimWrapperConstructor',
                     paramwise_cfg=dict(scale_lr_mult=0.01, scale_decay_mult=0.0,
                                        flat_decay_mult=0.0))
custom_hooks = [dict(type='NormStatisticsHook', interval=50)]  # no BCN: no rate hook
