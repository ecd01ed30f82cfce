# ResNet-101 with GN(32) + WS, otherwise resnet101_bcn-ws_8xb16-100e_in1k.py (the authors'
# ResNet-101 schedule), as resnet50_gn-ws_8xb32-90e_in1k.py is to its BCN+WS config.
_base_ = './resnet101_bcn-ws_8xb16-100e_in1k.py'

norm_cfg = dict(type='GN', num_groups=32, requires_grad=True)
model = dict(backbone=dict(norm_cfg=dict(_delete_=True, **norm_cfg)))
