# NanoDet-Plus-m 320 on COCO (RangiLyu/nanodet config/nanodet-plus-m_320.yml; ../shared/specs/
# seed-systems.md section 4.5), every part in Jittor (the model: _base_/nanodet-plus-m.py).
# 320x320 without keeping the ratio, AdamW 1e-3 (weight decay 0.05), 500-iteration linear warm-up
# from 1e-4 of it, cosine to 5e-5 over 300 epochs, gradient clip 35 (L2), EMA 0.9998 with NanoDet's
# ramp (mmdet's ExpMomentumEMA with momentum 2e-4 and gamma 2000 is NanoDet's
# 0.9998 * (1 - exp(-updates / 2000))), batch 96 per GPU, NanoDetPlusEpochHook for detach_epoch.
# Not reproduced: NanoDet's random warp and colour augmentations (flip only here). No ImageNet
# weights are loaded (ShuffleNetV2 takes a local torchvision file through
# model.backbone.init_cfg=dict(type='Pretrained', checkpoint=<path>)).
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py',
    './_base_/nanodet-plus-m.py'
]

input_size = (320, 320)

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=input_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=input_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=96, num_workers=8, batch_sampler=None, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=5e-5, by_epoch=True, begin=0,
         end=max_epochs),
]
custom_hooks = [
    dict(type='NanoDetPlusEpochHook'),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, gamma=2000,
         update_buffers=True, priority=49),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
