# Baseline: mmseg's DeepLabV3 R50-D8 as it ships (SyncBN, statistics over all GPUs),
# 8 GPUs x 2 images, 20k iterations; the ImageNet weights as a local file.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
# mmseg's ImageNet ResNet-50-V1c (open-mmlab://resnet50_v1c) as a local file.
pretrained = 'checkpoints/resnet50_v1c_bn_imagenet.pth'

model = dict(pretrained=pretrained)
train_dataloader = dict(batch_size=2)
# --auto-scale-lr scales lr 0.01 by (GPUs x images per GPU) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
