# Demo: Mask R-CNN R18-FPN with BCN (micro-batch mode, the authors' EstBN rule) + WS everywhere,
# trained from scratch on the generated shapes dataset (mmbcn.datasets.synthetic, 96x96 images,
# 3 classes) on CPU in minutes.
# 2 images per process. `make demo` runs it with 1 process; tools/dist_train.sh with 2.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=8, estimate=True, requires_grad=True)
conv_cfg = dict(type='WSConv2d')
width = 64  # FPN and head channels (256 in the COCO configs)
classes = ('rectangle', 'ellipse', 'triangle')

model = dict(
    backbone=dict(depth=18, norm_cfg=norm_cfg, conv_cfg=conv_cfg, norm_eval=False,
                  init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width, norm_cfg=norm_cfg,
              conv_cfg=conv_cfg),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', in_channels=width, conv_out_channels=width,
                       fc_out_channels=256, num_classes=len(classes), norm_cfg=norm_cfg,
                       conv_cfg=conv_cfg),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=len(classes),
                       norm_cfg=norm_cfg, conv_cfg=conv_cfg)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

data_root = 'data/mmbcn_demo/coco/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=1)  # a metric per epoch for the curves
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.02), clip_grad=dict(max_norm=10.0))
# NormStatisticsHook: eliminated/constant channels, margins, per-stage sample similarity and
# gradient norm, every 50 iterations (mmbcn.engine.hooks.norm_statistics_hook)
custom_hooks = [dict(type='BCNUpdateRateHook', policy='lr', rate=0.1),
                dict(type='NormStatisticsHook', interval=50)]
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)  # the README's demo numbers come from this seed
