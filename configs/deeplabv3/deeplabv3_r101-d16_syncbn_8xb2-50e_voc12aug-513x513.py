# The paper's BN row (76.49 mIoU): the recipe of deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-
# 513x513.py with SyncBN over the 16 images (mmseg's momentum 0.1; the original code used
# per-GPU-pair BN statistics settings of its own), plain convs and torchvision's ImageNet
# ResNet-101 (resnet101-5d3b4d8f.pth, the file that code fine-tuned from; same key names).
_base_ = './deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py'

norm_cfg = dict(_delete_=True, type='SyncBN', requires_grad=True)
model = dict(
    # A plain backbone state dict (no 'backbone.' prefix), as these weights are published.
    backbone=dict(norm_cfg=norm_cfg, conv_cfg=None,
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='checkpoints/resnet101_torchvision_imagenet.pth')),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=None))
