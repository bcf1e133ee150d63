# Gold-YOLO-S on COCO at 640 (huawei-noah Efficient-Computing configs/gold_yolo-s.py; ../shared/
# specs/seed-systems.md section 3), every part in Jittor: EfficientRep (fuse_P2, SimCSPSPPF),
# RepGDNeck, EffiDeHead (DFL reg_max 16, TAL, varifocal + GIoU + DFL). The original's solver: SGD
# lr 0.01 (nesterov, momentum 0.937, weight decay 5e-4 on conv weights only), 3 warm-up epochs,
# cosine to 0.01 x lr over 300 epochs, batch 256 over 8 GPUs (32 per GPU); evaluation with score
# threshold 0.03 and NMS IoU 0.65 (mmdet's class-aware NMS here, not YOLOv6's).
# Differences, stated: the neck's SyncBN is BN here (one process; Jittor parts do not synchronise
# batch statistics, see README "Distributed training"); YOLOv6's mosaic / HSV / affine
# augmentations and its letterbox are not reproduced (resize keeping the ratio, flip; the data
# preprocessor pads every batch to a multiple of 32, which the 32-stride network needs); no
# self-distillation; no ATSS warm-up (the original's configs set atss_warmup_epoch=0 too).
# Deploy: tools/reparameterize.py CONFIG CKPT OUT, then this config with
# --cfg-options model.backbone.deploy=True model.neck.deploy=True.
_base_ = ['mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

BN = dict(type='BN', requires_grad=True)
model = dict(
    type='GoldYOLO',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='EfficientRep', channels_list=[64, 128, 256, 512, 1024],
                  num_repeats=[1, 6, 12, 18, 6], width_multiple=0.5, depth_multiple=0.33,
                  fuse_P2=True, cspsppf=True),
    neck=dict(type='RepGDNeck',
              channels_list=[64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512],
              num_repeats=[1, 6, 12, 18, 6, 12, 12, 12, 12], width_multiple=0.5,
              depth_multiple=0.33,
              extra_cfg=dict(norm_cfg=BN, depths=2, fusion_in=960, ppa_in=704,
                             fusion_act=dict(type='ReLU6'), fuse_block_num=3, embed_dim_p=128,
                             embed_dim_n=704, key_dim=8, num_heads=4, mlp_ratios=1,
                             attn_ratios=2, c2t_stride=2, drop_path_rate=0.1,
                             trans_channels=[128, 64, 128, 256], pool_mode='torch')),
    bbox_head=dict(type='EffiDeHead', num_classes=80, in_channels=[64, 128, 256],
                   strides=[8, 16, 32], reg_max=16, atss_warmup_epoch=0, iou_type='giou'),
    test_cfg=dict(score_thr=0.03, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.65),
                  max_per_img=300))

input_size = (640, 640)
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=input_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=32, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=4, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 300
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.937, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 3, eta_min=1e-4, by_epoch=True, begin=3,
         end=max_epochs, convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=256)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
