# ResNet-101 with BatchNorm and plain convolutions, otherwise resnet101_bcn-ws_8xb16-100e_in1k.py
# (the authors' ResNet-101 schedule), as resnet50_bn_8xb32-90e_in1k.py is to its BCN+WS config.
_base_ = './resnet101_bcn-ws_8xb16-100e_in1k.py'

model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='BN', requires_grad=True),
                           conv_cfg=None))
