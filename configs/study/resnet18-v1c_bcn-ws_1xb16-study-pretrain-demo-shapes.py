# The pretraining task of the normalization study's pretrained protocol (`make study-pretrained`,
# tools/norm_study.py --pretrain): the demo's shapes classifier
# (../demo/resnet18_bcn-ws_1xb16-demo-shapes.py: 3 classes, 64x64 images, 1 process x 16 images,
# BCN large-batch + WS) with mmpretrain's ResNetV1c backbone, the deep stem of mmseg's ResNetV1c
# in DeepLabV3 R18-D8, so every pretrained tensor has a place in the segmenter's backbone (the
# study renames the stem's keys: mmpretrain builds it of ConvModules, mmseg of plain layers).
# 4 epochs (32 iterations) instead of the demo's 10: short enough for 6 presets x 3 seeds of
# pretraining and fine-tuning in 30 minutes on a 2-core CPU. The study swaps the normalization.
_base_ = '../demo/resnet18_bcn-ws_1xb16-demo-shapes.py'

model = dict(backbone=dict(type='ResNetV1c'))
max_epochs = 4
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[3], gamma=0.1)
default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = []
