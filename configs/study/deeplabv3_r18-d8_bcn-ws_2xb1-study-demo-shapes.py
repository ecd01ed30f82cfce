# The normalization study's default task (`make study`, tools/norm_study.py): the DeepLabV3
# R18-D8 demo (../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py, generated shapes in VOC
# layout, 64x64 crops) at 2 processes x 1 image, the micro-batch setting, on a schedule short
# enough for 5 presets x 3 seeds in 15 minutes on a 2-core CPU. BCN micro-batch mode (a global
# batch of 2 images; the demo's rule) + WS as in the demo; the study swaps the normalization.
# Half the demo's learning rate for half its global batch.
_base_ = '../demo/deeplabv3_r18-d8_bcn-ws_2xb2-demo-shapes.py'

train_dataloader = dict(batch_size=1)
max_iters = 120
train_cfg = dict(max_iters=max_iters, val_interval=20)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
