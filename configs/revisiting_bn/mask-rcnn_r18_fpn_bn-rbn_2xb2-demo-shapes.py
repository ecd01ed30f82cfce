# The Revisiting-BN recipe with BatchNorm on the Mask R-CNN R18-FPN demo
# (../demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py, CPU): BN (trained, per process) in
# backbone, FPN and RoI heads, plain convs, the 0.1 scale init after every other init, the norm
# scales at lr / 100 without weight decay, no decay on other 1-d parameters, and the input
# BatchNorm in place of the fixed mean/std (configs/revisiting_bn/README.md).
_base_ = '../demo/mask-rcnn_r18_fpn_bcn-ws_2xb2-demo-shapes.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

# _delete_: the base's BCN cfg goes, not merged
norm_cfg = dict(_delete_=True, type='BN', requires_grad=True)
model = dict(
    init_cfg=[dict(type='RevisitingBNInit', scale=0.1)],
    data_preprocessor=dict(
        _delete_=True, type='InputNormDataPreprocessor', scale=0.1,
        preprocessor=dict(type='DetDataPreprocessor', mean=None, std=None, bgr_to_rgb=True,
                          pad_size_divisor=32)),
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=None),
    neck=dict(norm_cfg=norm_cfg, conv_cfg=None),
    roi_head=dict(bbox_head=dict(norm_cfg=norm_cfg, conv_cfg=None),
                  mask_head=dict(norm_cfg=norm_cfg, conv_cfg=None)))
optim_wrapper = dict(constructor='RevisitingBNOptimWrapperConstructor')
custom_hooks = [dict(type='NormStatisticsHook', interval=50)]  # no BCN: no rate hook
