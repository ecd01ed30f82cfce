# Demo: DeepLabV3 R18-D8 with BCN (micro-batch mode, with the estimate rule of the authors' EstBN:
# a global batch of 2-4 small images is too small for batch statistics) + WS in backbone and
# heads (ASPP image pooling included), trained from scratch on the generated shapes dataset in
# VOC layout (mmbcn.datasets.synthetic, 96x96 images, background + 3 classes) on CPU in minutes.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=8, estimate=True, requires_grad=True)
conv_cfg = dict(type='WSConv2d')
crop_size = (64, 64)
classes = ('background', 'rectangle', 'ellipse', 'triangle')
palette = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [0, 0, 128]]

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(depth=18, norm_cfg=norm_cfg, conv_cfg=conv_cfg, norm_eval=False),
    decode_head=dict(in_channels=512, channels=64, dilations=(1, 2, 4, 6),
                     num_classes=len(classes), norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    auxiliary_head=dict(in_channels=256, channels=32, num_classes=len(classes),
                        norm_cfg=norm_cfg, conv_cfg=conv_cfg))

data_root = 'data/mmbcn_demo/voc'
metainfo = dict(classes=classes, palette=palette)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(96, 96), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# The VOC layout, read by mmseg's BaseSegDataset (PascalVOCDataset only accepts VOC class names).
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False,
               data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **dataset, ann_file='ImageSets/Segmentation/train.txt',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, **dataset, ann_file='ImageSets/Segmentation/val.txt',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=25)  # about one epoch: a metric per epoch
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
optim_wrapper = dict(optimizer=dict(lr=0.02))
# NormStatisticsHook: eliminated/constant channels, margins, per-stage sample similarity and
# gradient norm, every 50 iterations (mmbcn.engine.hooks.norm_statistics_hook)
custom_hooks = [dict(type='BCNUpdateRateHook', policy='lr', rate=0.1),
                dict(type='NormStatisticsHook', interval=50)]
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=2))
randomness = dict(seed=0)  # the README's demo numbers come from this seed
