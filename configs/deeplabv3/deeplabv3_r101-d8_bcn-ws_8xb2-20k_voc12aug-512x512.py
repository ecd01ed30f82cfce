# As deeplabv3_r50-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py, with a ResNet-101 backbone.
_base_ = './deeplabv3_r50-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py'
model = dict(backbone=dict(
    depth=101, init_cfg=dict(checkpoint='checkpoints/resnet101_bcn-ws_imagenet.pth')))
