# Demo: pretraining a ResNet-18 with BCN (large-batch mode, as the ImageNet configs) + WS on the
# generated one-shape-per-image set in ImageNet's folder layout (mmbcn.datasets.synthetic,
# 64x64 images, 3 classes), from scratch, on CPU in under a minute. It is the ImageNet config
# ../imagenet/resnet50_bcn-ws_8xb32-90e_in1k.py made small; the demo then starts the detection
# demo's backbone from its weights (the same 8-group BCN, so they load with no conversion).
_base_ = '../imagenet/resnet50_bcn-ws_8xb32-90e_in1k.py'

classes = ('ellipse', 'rectangle', 'triangle')  # the class folders, in sorted order
norm_cfg = dict(type='BCN', num_groups=8, estimate=False, sync_stats=True, momentum=0.1,
                requires_grad=True)
model = dict(
    data_preprocessor=dict(num_classes=len(classes)),
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    head=dict(num_classes=len(classes), in_channels=512, topk=(1, )))

data_root = 'data/mmbcn_demo/imagenet'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, split='train', metainfo=dict(classes=classes),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, split='val', metainfo=dict(classes=classes),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_epochs = 10
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[8], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=0.05))
# eliminated/constant channels, margins, per-stage sample similarity and gradient norm
# (mmbcn.engine.hooks.norm_statistics_hook); the run is short: every 10 iterations
custom_hooks = [dict(type='NormStatisticsHook', interval=10)]
default_hooks = dict(logger=dict(interval=2), checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)  # the README's demo numbers come from this seed
