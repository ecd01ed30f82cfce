# DeepLabV3 R50-D8 on PASCAL VOC 2012 + SBD aug, 512x512 crops, with BCN + WS in the backbone and
# both heads (ASPP image pooling included), 8 GPUs x 2 images (16 per step, as mmseg's 4x4), 20k
# iterations, lr 0.01: mmseg's recipe, not the authors' DeepLabV3 one (that one is
# deeplabv3_r101-d16_bcn-ws_8xb2-50e_voc12aug-513x513.py).
#
# BCN mode: large-batch (estimate=False), synchronized (sync_stats): the batch stage uses the
# statistics of the global batch of 16 images, with gradients through them, as the authors'
# DeepLabV3 did (PBCNorm in their DeepLabV3/deeplab.py: a SyncBatchNorm stage over 16 images).
# A global batch of 8-16 images gives BN statistics that are good enough; micro-batch mode is for
# smaller global batches (the demo).
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmbcn'], allow_failed_imports=False)

norm_cfg = dict(type='BCN', num_groups=32, estimate=False, sync_stats=True, requires_grad=True)
conv_cfg = dict(type='WSConv2d')
# ImageNet BCN+WS ResNet-50 from the authors' release, converted to mmseg keys; a local file.
# Point elsewhere with --cfg-options model.backbone.init_cfg.checkpoint=/path/to/file.pth
pretrained = 'checkpoints/resnet50_bcn-ws_imagenet.pth'

model = dict(
    pretrained=None,
    # mmseg's ResNet with the plain 7x7 stem (not ResNetV1c's deep stem): the authors' ImageNet
    # BCN+WS weights (tools/convert_checkpoint.py) have that stem.
    backbone=dict(type='ResNet', norm_cfg=norm_cfg, conv_cfg=conv_cfg, norm_eval=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg),
    auxiliary_head=dict(norm_cfg=norm_cfg, conv_cfg=conv_cfg))
train_dataloader = dict(batch_size=2)
# --auto-scale-lr scales lr 0.01 by (GPUs x images per GPU) / 16
auto_scale_lr = dict(enable=False, base_batch_size=16)
