# Baseline: DeepLabV3 R50-D8 with GN(32) + WS in the same places as the BCN+WS config,
# 8 GPUs x 2 images, 20k iterations. WS as the layer in the README of the authors' WS
# repository: std + eps (not sqrt(var + eps)).
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
conv_cfg = dict(type='WSConv2d', eps_on='std')
# ImageNet GN+WS ResNet-50 as a local file.
pretrained = 'checkpoints/resnet50_gn-ws_imagenet.pth'

model = dict(
    pretrained=pretrained,
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg))
train_dataloader = dict(batch_size=2)
# --auto-scale-lr scales lr 0.01 by (GPUs x images per GPU) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
