# Baseline: Mask R-CNN R50-FPN with GN(32) + WS in the same places as the BCN+WS config
# (mmdet's gn+ws/mask-rcnn_r50_fpn_gn-ws-all config, with mmbcn's WSConv2d), 8 GPUs x 2 images.
# WS as mmdet's recipe (mmcv's ConvWS) and the layer in the authors' WS README: std + eps, not
# sqrt(var + eps).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
conv_cfg = dict(type='WSConv2d', eps_on='std')
# ImageNet GN+WS ResNet-50 (mmdet: open-mmlab://jhu/resnet50_gn_ws), saved as a local file.
pretrained = 'checkpoints/resnet50_gn-ws_imagenet.pth'

model = dict(
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=norm_cfg, conv_cfg=conv_cfg),
        mask_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg)))
