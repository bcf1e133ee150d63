# Settings shared by the configs on CLIP's C4, as variables (not `model`, so that a config can
# inherit them next to a base that defines its model), used as {{_base_.<name>}}:
# CLIP's input normalisation, the RPN settings of mmdet's faster-rcnn_r50-caffe-c4 (one level,
# stride 16) for the configs that put an RPN on C4 (../../demo/unidetector_2ndstage_*), and what
# turns a mixed FastRCNN config on C4 into its pure-Jittor twin (the *_jittor.py configs).
clip_data_preprocessor = dict(  # CLIP's mean and std (x255), RGB
    type='DetDataPreprocessor',
    mean=[122.7709383, 116.7460125, 104.09373615],
    std=[68.5005327, 66.6321579, 70.32316305],
    bgr_to_rgb=True,
    pad_size_divisor=32)
c4_rpn_train_cfg = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                  match_low_quality=True, ignore_iof_thr=-1),
    sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                 add_gt_as_proposals=False),
    allowed_border=-1,
    pos_weight=-1,
    debug=False)
c4_rpn_proposal = dict(nms_pre=12000, max_per_img=2000, nms=dict(type='nms', iou_threshold=0.7),
                       min_bbox_size=0)
c4_rpn_test_cfg = dict(nms_pre=6000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                       min_bbox_size=0)
# mixed (FastRCNN, MetaStandardRoIHead, SingleRoIExtractor) -> pure Jittor; the Jittor parts
# (CLIPResNet, CLIPResLayer, the CLIP bbox heads) are the same in both modes
jittor_fast_rcnn = dict(
    type='JittorFastRCNN',
    roi_head=dict(type='JittorStandardRoIHead',
                  bbox_roi_extractor=dict(type='JittorSingleRoIExtractor')))
