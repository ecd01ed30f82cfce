# Baseline: mmdet's Mask R-CNN R50-FPN as it ships (frozen BN in the backbone, norm_eval=True,
# no norm in FPN and heads), 8 GPUs x 2 images; the ImageNet weights as a local file.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
# torchvision's ImageNet ResNet-50 (mmdet: torchvision://resnet50), saved as a local file.
pretrained = 'checkpoints/resnet50_bn_imagenet.pth'

model = dict(backbone=dict(norm_cfg=norm_cfg,
                           init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
