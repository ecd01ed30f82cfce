# ResNet-101, BCN + WS: resnet50_bcn-ws_8xb32-90e_in1k.py at depth 101 on the authors' ResNet-101
# schedule (their imagenet/README.md): 128 images per step (8 GPUs x 16; theirs 4 GPUs x 32) at
# lr 0.1, 100 epochs, lr x0.1 at epochs 30, 60 and 90.
_base_ = './resnet50_bcn-ws_8xb32-90e_in1k.py'

model = dict(backbone=dict(depth=101))
train_dataloader = dict(batch_size=16)
val_dataloader = dict(batch_size=16)
test_dataloader = val_dataloader

max_epochs = 100
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
auto_scale_lr = dict(base_batch_size=128)
