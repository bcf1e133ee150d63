# UniDetector 2nd stage, multi-dataset, pure-Jittor mode: the mixed config
# (clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py) with every part in Jittor:
# JittorStandardRoIHead (shared_head CLIPResLayer; sampling results carry each image's metainfo,
# so dataset_id reaches BBoxHeadCLIPPartitioned) and JittorSingleRoIExtractor.
# One difference from the original: its 2nd stage is a FastRCNN on the 1st stage's proposal
# files; pure mode has no proposal-file detector yet, so this is JittorFasterRCNN with an RPN on
# CLIP's C4 (mmdet's faster-rcnn_r50-caffe-c4 RPN and its train/test settings).
# Only the model is built by tests/test_unidetector_configs.py; training on it has not been run.
_base_ = ['./clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py']

model = dict(
    type='JittorFasterRCNN',
    rpn_head=dict(
        type='JittorRPNHead',
        in_channels=1024,
        feat_channels=1024,
        anchor_generator=dict(type='AnchorGenerator', scales=[2, 4, 8, 16, 32],
                              ratios=[0.5, 1.0, 2.0], strides=[16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='JittorStandardRoIHead',
        bbox_roi_extractor=dict(type='JittorSingleRoIExtractor')),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=12000, max_per_img=2000, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0)),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0)))
