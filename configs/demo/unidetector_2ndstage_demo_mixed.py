# UniDetector's 2nd-stage model on the toy-shapes demo data, mixed mode: mmdet's FasterRCNN, RPNHead
# and MetaStandardRoIHead (its sampling results carry each image's metainfo) with the Jittor
# CLIPResNet (C4), CLIPResLayer shared head and BBoxHeadCLIPPartitioned (one label space here: the
# 3 shapes; AddDatasetId tags every training sample with dataset_id 0).
#
#   python tools/generate_demo_dataset.py
#   python tools/train.py configs/demo/unidetector_2ndstage_demo_mixed.py
#
# Small and from scratch (nothing can be downloaded): CLIP stem width 32, one block per stage.
# The class embeddings (configs/demo/unidetector_shapes_embeddings.npy, 3 x 64 float16) are NOT
# CLIP text embeddings (computing those needs CLIP's text tower and weights): they are fixed random
# prototypes, np.random.RandomState(0).randn(3, 64), so the cosine classifier learns to map each
# shape's RoIs onto its prototype. Differences from the original's 2nd stage: an RPN on C4 instead
# of the 1st stage's proposal files (no proposals exist for the demo data), the demo schedule.
_base_ = ['./_base_/demo_shapes.py', '../unidetector/_base_/clip_c4.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

clip_layers = [1, 1, 1, 1]
clip_width = 32
c4_channels = clip_width * 16  # 512; CLIPResLayer gives clip_width * 32 = 1024
embeddings = 'configs/demo/unidetector_shapes_embeddings.npy'  # relative to the repository root

model = dict(
    type='FasterRCNN',
    data_preprocessor={{_base_.clip_data_preprocessor}},
    backbone=dict(type='CLIPResNet', layers=clip_layers, width=clip_width, out_indices=(2, ),
                  frozen_stages=-1, norm_eval=False),
    rpn_head=dict(
        type='RPNHead',
        in_channels=c4_channels,
        feat_channels=128,
        # Objects are 10-90 px: anchors of 16-128 px at stride 16.
        anchor_generator=dict(type='AnchorGenerator', scales=[1, 2, 4, 8],
                              ratios=[0.5, 1.0, 2.0], strides=[16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='MetaStandardRoIHead',
        shared_head=dict(type='CLIPResLayer', layers=clip_layers, width=clip_width),
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=c4_channels,
            featmap_strides=[16]),
        bbox_head=dict(
            type='BBoxHeadCLIPPartitioned',
            roi_feat_size=7,
            in_channels=clip_width * 32,
            embed_dim=64,
            num_heads=8,
            num_classes=3,
            zeroshot_path=[embeddings],
            cat_freq_path=[None],
            fed_loss_num_cat=50,
            reg_class_agnostic=True,
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        rpn={{_base_.c4_rpn_train_cfg}},  # mmdet's caffe-C4 RPN training
        rpn_proposal=dict(nms_pre=2000, max_per_img=500, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))

# The partitioned head's loss reads each training image's dataset_id (AddDatasetId, after
# PackDetInputs); test time scores against test_dataset_id (0) and needs none.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(256, 256), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
    dict(type='AddDatasetId', dataset_id=0),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
