# As deeplabv3_r101-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py with 1 image per GPU: 8 images per
# step, so half the learning rate and twice the iterations (the same number of epochs).
# BCN mode: large-batch, synchronized over the global batch of 8 images (as in the 8xb2 config).
_base_ = './deeplabv3_r101-d8_bcn-ws_8xb2-20k_voc12aug-512x512.py'
train_dataloader = dict(batch_size=1)
optim_wrapper = dict(optimizer=dict(lr=0.005))
train_cfg = dict(max_iters=40000)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=40000, by_epoch=False)]
