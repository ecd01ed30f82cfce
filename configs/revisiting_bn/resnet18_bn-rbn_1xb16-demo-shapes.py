# The Revisiting-BN recipe with BatchNorm on the ResNet-18 pretraining demo
# (../demo/resnet18_bcn-ws_1xb16-demo-shapes.py, CPU): as the authors' CIFAR ResNets, BN with
# every scale starting at 0.1 (after the backbone's own init and its residual zero-init), the
# scales at lr / 100 without weight decay, no decay on other 1-d parameters, and the input
# BatchNorm in place of the fixed mean/std (configs/revisiting_bn/README.md).
_base_ = '../demo/resnet18_bcn-ws_1xb16-demo-shapes.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.datasets.checked_imagenet'],
                      allow_failed_imports=False)

model = dict(
    init_cfg=[dict(type='RevisitingBNInit', scale=0.1)],
    data_preprocessor=dict(
        _delete_=True, type='InputNormDataPreprocessor', scale=0.1,
        preprocessor=dict(type='ClsDataPreprocessor', num_classes=3, mean=None, std=None,
                          to_rgb=True)),
    backbone=dict(norm_cfg=dict(_delete_=True, type='BN', requires_grad=True), conv_cfg=None))
optim_wrapper = dict(constructor='RevisitingBNOptimWrapperConstructor')
