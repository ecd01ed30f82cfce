# The paper's GN+WS row (77.20 mIoU): the recipe of deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-
# 513x513.py with GN(32) in place of BCN and the ImageNet GN+WS ResNet-101 of the WS release
# (mmdet: open-mmlab://jhu/resnet101_gn_ws, trained with the same std + 1e-5 WS).
_base_ = './deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py'

norm_cfg = dict(_delete_=True, type='GN', num_groups=32, requires_grad=True)
model = dict(
    # A plain backbone state dict (no 'backbone.' prefix), as these weights are published.
    backbone=dict(norm_cfg=norm_cfg,
                  init_cfg=dict(_delete_=True, type='Pretrained',
                                checkpoint='checkpoints/resnet101_gn-ws_imagenet.pth')),
    decode_head=dict(norm_cfg=norm_cfg))
