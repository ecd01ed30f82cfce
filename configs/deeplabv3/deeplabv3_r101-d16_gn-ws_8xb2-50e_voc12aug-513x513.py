# The GN+WS row (77.20 mIoU) of the table in DeepLabV3/README.md of the authors' BCN release (a
# row it repeats from chenxi116/DeepLabv3.pytorch's README, whose code trained it; the released
# deeplab.py builds BCN only): the recipe of deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-
# 513x513.py with GN(32) in place of BCN and the ImageNet GN+WS ResNet-101 of the WS release
# (R-101-GN-WS.pth.tar, which DeepLabv3.pytorch fine-tunes from; mmdet:
# open-mmlab://jhu/resnet101_gn_ws).
_base_ = './deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py'

norm_cfg = dict(_delete_=True, type='GN', num_groups=32, requires_grad=True)
model = dict(
    # A plain backbone state dict (no 'backbone.' prefix), as these weights are published.
    backbone=dict(norm_cfg=norm_cfg,
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='checkpoints/resnet101_gn-ws_imagenet.pth')),
    decode_head=dict(norm_cfg=norm_cfg))
