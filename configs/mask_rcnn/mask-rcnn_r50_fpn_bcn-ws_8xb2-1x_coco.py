# Mask R-CNN R50-FPN with BCN + WS in the backbone, the FPN, the 4-conv box head and the mask head
# (where mmdet's GN+WS configs put GN + ConvWS), 8 GPUs x 2 images, 1x schedule, lr 0.02.
#
# BCN runs in micro-batch mode (estimate=True: estimated statistics, which arXiv:1903.10520's
# abstract puts forward for 1-2 images per GPU; the BCN release has no detection code): the
# batch stage normalizes with estimates moved by the rule of the authors' EstBN (their README)
# towards the statistics of the global batch (all 16 images: sync_stats all-reduces them) at the
# update rate r set by BCNUpdateRateHook (r = 0.1 x lr / base lr: mmbcn's choice, the release
# sets no r; see mmbcn/engine/bcn_update_rate_hook.py). For large-batch mode (gradients through
# the batch statistics, as SyncBN) set estimate=False. WS is sqrt(var + eps), as the ImageNet
# code released with the BCN+WS weights (imagenet/models/layers.py).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=32, estimate=True, requires_grad=True)
conv_cfg = dict(type='WSConv2d')
# ImageNet BCN+WS ResNet-50 from the authors' release, converted to mmdet keys; a local file, so
# nothing is downloaded. Point elsewhere with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth
pretrained = 'checkpoints/resnet50_bcn-ws_imagenet.pth'

model = dict(
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg, norm_eval=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                                prefix='backbone.')),
    neck=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=norm_cfg, conv_cfg=conv_cfg),
        mask_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg)))
custom_hooks = [dict(type='BCNUpdateRateHook', policy='lr', rate=0.1)]
