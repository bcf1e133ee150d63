# NanoDet-Plus-m (every part in Jittor, configs/nanodet_plus/_base_/nanodet-plus-m.py) on the
# toy-shapes demo, 3 classes, with nanodet-plus-m_320_coco.py's optimiser, clip, warm-up, cosine
# schedule and EMA scaled to the demo (256 px, batch 4, 50 iterations per epoch, 4 epochs).
#   .venv/bin/python tools/train.py configs/demo/nanodet-plus_demo_jittor.py
_base_ = ['./_base_/demo_shapes.py', '../nanodet_plus/_base_/nanodet-plus-m.py']

model = dict(
    bbox_head=dict(num_classes=3),
    aux_head=dict(num_classes=3),
    # the demo's few epochs: the aux branch detaches after the first
    detach_epoch=1)

image_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=4, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=2, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
max_epochs = 4
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=5e-5, by_epoch=True, begin=0,
         end=max_epochs),
]
# ~200 updates: NanoDet's EMA ramp (gamma 2000 updates) would keep the EMA near the start
custom_hooks = [
    dict(type='NanoDetPlusEpochHook'),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, gamma=50,
         update_buffers=True, priority=49),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
