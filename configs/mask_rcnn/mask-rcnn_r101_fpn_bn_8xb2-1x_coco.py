# As mask-rcnn_r50_fpn_bn_8xb2-1x_coco.py, with a ResNet-101 backbone.
_base_ = './mask-rcnn_r50_fpn_bn_8xb2-1x_coco.py'
pretrained = 'checkpoints/resnet101_bn_imagenet.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint=pretrained)))
