# ResNet-50 with BatchNorm (per GPU, 32 images) and plain convolutions, otherwise
# resnet50_bcn-ws_8xb32-90e_in1k.py: the data, the authors' 90-epoch schedule, and the last BN
# of each block zero-initialized (as mmpretrain's resnet50_8xb32_in1k).
_base_ = './resnet50_bcn-ws_8xb32-90e_in1k.py'

model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='BN', requires_grad=True),
                           conv_cfg=None))
