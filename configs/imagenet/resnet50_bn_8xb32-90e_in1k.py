# ResNet-50 with BatchNorm (per GPU, 32 images) and plain convolutions: mmpretrain's
# resnet50_8xb32_in1k on the authors' 90-epoch schedule of resnet50_bcn-ws_8xb32-90e_in1k.py.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmbcn', 'mmbcn.datasets.checked_imagenet'],
                      allow_failed_imports=False)

train_dataloader = dict(dataset=dict(type='CheckedImageNet'))
val_dataloader = dict(dataset=dict(type='CheckedImageNet'))
test_dataloader = val_dataloader

max_epochs = 90
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
