# ResNet-50 with BCN + WS at every norm and conv, trained on ImageNet with the recipe of the
# authors' release (github.com/joe-siyuan-qiao/Batch-Channel-Normalization: the ResNet-50 command
# of imagenet/README.md and the defaults of imagenet/imagenet.py):
# 256 images per step, SGD lr 0.1, momentum 0.9, weight decay 1e-4 on every parameter, 90 epochs
# with lr x0.1 at epochs 30 and 60, RandomResizedCrop 224 + flip, test on the 224 centre crop of
# the 256-short-side image; each block's last norm starts with its channel-stage weight at 0.
# BCN runs large-batch: batch statistics of all 256 images (8 GPUs x 32, synchronized; the
# authors' DataParallel on 4 GPUs normalized over each GPU's 64), running averages at momentum
# 0.1. WS: sqrt(var + 1e-5), as their ImageNet conv (imagenet/models/layers.py). The checkpoints
# load into the BCN+WS Mask R-CNN and DeepLabV3 configs (init_cfg=dict(type='Pretrained',
# checkpoint=..., prefix='backbone.')).
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.datasets.checked_imagenet'],
                      allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=32, estimate=False, sync_stats=True, momentum=0.1,
                requires_grad=True)
conv_cfg = dict(type='WSConv2d')
model = dict(
    backbone=dict(
        norm_cfg=norm_cfg, conv_cfg=conv_cfg,
        # mmpretrain's zero_init_residual zeroes the batch stage after all initializers;
        # ResidualZeroInit zeroes the channel stage's weight instead, as the authors' resnet.py.
        zero_init_residual=False,
        init_cfg=[dict(type='Kaiming', layer=['Conv2d']),
                  dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
                  dict(type='ResidualZeroInit')]))

train_dataloader = dict(dataset=dict(type='CheckedImageNet'))
val_dataloader = dict(dataset=dict(type='CheckedImageNet'))
test_dataloader = val_dataloader

max_epochs = 90
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
