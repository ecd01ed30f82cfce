# DeepLabV3 R101 on PASCAL VOC 2012 + SBD aug with BCN + WS, following the recipe of the authors'
# released DeepLabV3 code that gave 78.10 mIoU (the table of DeepLabV3/README.md in
# github.com/joe-siyuan-qiao/Batch-Channel-Normalization; DeepLabV3/main.py and deeplab.py, built
# on chenxi116/DeepLabv3.pytorch):
# * BCN in large-batch mode over the synchronized global batch of 16 (their batch stage is a
#   SyncBatchNorm, momentum 0.1) and WS as their Conv2d, (w - mean) / (std + 1e-5), in the
#   backbone and the ASPP head; their ImageNet BCN+WS ResNet-101 (rn101-bcn-ws.pth.tar);
# * ResNet-101 with the plain 7x7 stem, output stride 16 (layer4 dilated by 2, its first block
#   by 1), multi-grid (1, 1, 1); ASPP rates 6/12/18 plus image pooling, 256 channels, no
#   auxiliary head, no dropout, bilinear upsampling with aligned corners;
# * 513x513 crops of images rescaled by [0.5, 2], horizontal flips (pascal.py and utils.py of
#   DeepLabv3.pytorch, which their main.py imports); SGD lr 0.007, momentum 0.9, weight decay
#   1e-4, poly (power 0.9) to 0; 50 epochs of train_aug at 16 images per step (here 8 GPUs x 2;
#   theirs splits 16 over the machine's GPUs); evaluated single-scale on whole, unresized images
#   (theirs pads each to 513x513, the padding ignored; here no padding at test); cross-entropy
#   averaged over the labelled pixels.
# Where mmseg makes it differ: the conv after the ASPP concatenation is mmseg's 3x3 (theirs 1x1).
# The GN+WS and SyncBN rows of the same table: the two configs beside this one.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=32, estimate=False, sync_stats=True, momentum=0.1,
                requires_grad=True)
conv_cfg = dict(type='WSConv2d', eps_on='std')
# The authors' ImageNet BCN+WS ResNet-101 converted with tools/convert_checkpoint.py; a local file.
pretrained = 'checkpoints/resnet101_bcn-ws_imagenet.pth'
crop_size = (513, 513)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(type='ResNet', depth=101, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                  contract_dilation=True, norm_cfg=norm_cfg, conv_cfg=conv_cfg,
                  norm_eval=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(channels=256, dilations=(1, 6, 12, 18), dropout_ratio=0.0,
                     align_corners=True, norm_cfg=norm_cfg, conv_cfg=conv_cfg,
                     loss_decode=dict(avg_non_ignore=True)),
    auxiliary_head=None)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # VOC images are at most 500 pixels on a side: the image itself rescaled by [0.5, 2].
    dict(type='RandomResize', scale=(500, 500), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
voc = dict(type='PascalVOCDataset', data_root='data/VOCdevkit/VOC2012')
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(datasets=[
        dict(voc, data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
             ann_file='ImageSets/Segmentation/train.txt', pipeline=train_pipeline),
        dict(voc, data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
             ann_file='ImageSets/Segmentation/aug.txt', pipeline=train_pipeline),
    ]))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.007, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=50, by_epoch=True,
         convert_to_iter_based=True)
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=50, val_interval=10)
default_hooks = dict(
    logger=dict(log_metric_by_epoch=True),
    checkpoint=dict(by_epoch=True, interval=10))
log_processor = dict(by_epoch=True)
# --auto-scale-lr scales lr 0.007 by (GPUs x images per GPU) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
