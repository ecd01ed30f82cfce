# ResNet-50 with GN (32 groups) + WS, the authors' Weight Standardization ImageNet baseline
# (github.com/joe-siyuan-qiao/pytorch-classification): the same data, schedule and init as
# resnet50_bcn-ws_8xb32-90e_in1k.py, GroupNorm in place of BCN (the last norm of each block
# zero-initialized).
_base_ = './resnet50_bcn-ws_8xb32-90e_in1k.py'

norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(backbone=dict(norm_cfg=dict(_delete_=True, **norm_cfg)))
