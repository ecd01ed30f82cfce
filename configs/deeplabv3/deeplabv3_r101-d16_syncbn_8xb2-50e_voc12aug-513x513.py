# The BN row (76.49 mIoU) of the table in DeepLabV3/README.md of the authors' BCN release (a row
# it repeats from chenxi116/DeepLabv3.pytorch's README, whose code trained it): the recipe of
# deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py with SyncBN over the 16 images (mmseg's
# momentum 0.1; DeepLabv3.pytorch's main.py trains under nn.DataParallel, so per-GPU BN
# statistics, with momentum 0.05 in the backbone and 0.0003 in the ASPP head), plain convs and
# torchvision's ImageNet
# ResNet-101 (resnet101-5d3b4d8f.pth, the file that code fine-tuned from; same key names).
_base_ = './deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py'

norm_cfg = dict(_delete_=True, type='SyncBN', requires_grad=True)
model = dict(
    # A plain backbone state dict (no 'backbone.' prefix), as these weights are published.
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=None,
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='checkpoints/resnet101_torchvision_imagenet.pth')),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=None))
