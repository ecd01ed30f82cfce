# As mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py, with a ResNet-101 backbone.
_base_ = './mask-rcnn_r50_fpn_bcn-ws_8xb2-1x_coco.py'
pretrained = 'checkpoints/resnet101_bcn-ws_imagenet.pth'
model = dict(backbone=dict(depth=101, init_cfg=dict(checkpoint=pretrained)))
