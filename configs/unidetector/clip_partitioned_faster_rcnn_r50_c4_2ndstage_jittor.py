# UniDetector 2nd stage, multi-dataset, pure-Jittor mode: the mixed config
# (clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py) with every part in Jittor:
# JittorStandardRoIHead (shared_head CLIPResLayer; sampling results carry each image's metainfo,
# so dataset_id reaches BBoxHeadCLIPPartitioned) and JittorSingleRoIExtractor.
# One difference from the original: its 2nd stage is a FastRCNN on the 1st stage's proposal
# files; pure mode has no proposal-file detector yet, so this is JittorFasterRCNN with an RPN on
# CLIP's C4 (mmdet's faster-rcnn_r50-caffe-c4 RPN and its train/test settings).
# Only the model is built by tests/test_unidetector_configs.py; training on it has not been run.
_base_ = ['./clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py']  # with ./_base_/clip_c4.py

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
    train_cfg=dict(rpn={{_base_.c4_rpn_train_cfg}}, rpn_proposal={{_base_.c4_rpn_proposal}}),
    test_cfg=dict(rpn={{_base_.c4_rpn_test_cfg}}))
