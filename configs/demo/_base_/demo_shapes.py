# Demo toy-shapes dataset, schedule and runtime, shared by every configs/demo/ config.
#
# The dataset is generated offline by `python tools/generate_demo_dataset.py` (kwcoco toy shapes:
# 200 train / 50 val images of 256x256, 3 classes, ~9 objects per image, plain COCO files).
# A config that inherits this file only has to define `model` (with num_classes=3).
#
# Overriding from the command line (tools/train.py --cfg-options ...):
#   longer schedule:  train_cfg.max_epochs=12 param_scheduler.1.end=12 \
#                     param_scheduler.1.milestones="[8,11]"
#   other data root:  the data roots and the evaluators' ann_file are separate keys, e.g.
#                     train_dataloader.dataset.data_root=/x/ val_dataloader.dataset.data_root=/x/ \
#                     test_dataloader.dataset.data_root=/x/ \
#                     val_evaluator.ann_file=/x/annotations/instances_val.json \
#                     test_evaluator.ann_file=/x/annotations/instances_val.json
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# ---------------------------------------------------------------- dataset
dataset_type = 'CocoDataset'
data_root = 'data/demo_shapes/'
# The category order of tools/generate_demo_dataset.py (COCO ids 1, 2, 3).
metainfo = dict(
    classes=('star', 'superstar', 'eff'),
    palette=[(220, 20, 60), (0, 160, 255), (255, 200, 0)])
image_scale = (256, 256)
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule
# 200 images / batch 4 = 50 iterations per epoch. 4 epochs (200 iterations) keep `make demo` within
# minutes-to-tens-of-minutes on a 2-core CPU; --cfg-options train_cfg.max_epochs=12 ... trains longer.
max_epochs = 4
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    # 50 iterations (1 epoch) of linear warm-up: the models start from random weights.
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs - 1],  # one decay (x0.1) for the last epoch
        gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
# lr 0.02 was chosen for batch 4 on one device; --auto-scale-lr rescales it for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=4)

# ---------------------------------------------------------------- runtime
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2),
    # Draws nothing unless enabled; tools/test.py --show-dir switches it on.
    visualization=dict(type='DetVisualizationHook'))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
randomness = dict(seed=0)
