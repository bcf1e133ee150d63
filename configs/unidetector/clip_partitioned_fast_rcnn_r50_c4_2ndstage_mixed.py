# UniDetector 2nd stage, multi-dataset (COCO + Objects365 + OID label spaces, 500 = the largest),
# mixed mode: mmdet's FastRCNN and StandardRoIHead (MetaStandardRoIHead: sampling results carry
# each image's metainfo) with the Jittor CLIPResNet, CLIPResLayer and BBoxHeadCLIPPartitioned.
# Mirrors zhenyuw16/UniDetector configs/multidataset/clip_decouple_faster_rcnn_r50_c4_1x_
# oidobjcoco_2ndstage.py (../shared/specs/seed-systems.md 1.6). Only the model is built by
# tests/test_unidetector_configs.py: the CLIP text embeddings (.npy) and the 1st-stage proposal
# files are not in this repository; training on this config has not been run.
_base_ = ['./_base_/clip_c4.py']
custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

embeddings = 'data/metadata/'
model = dict(
    type='FastRCNN',
    data_preprocessor={{_base_.clip_data_preprocessor}},
    backbone=dict(type='CLIPResNet', layers=[3, 4, 6, 3], width=64, out_indices=(2, ),
                  frozen_stages=1, norm_eval=True),
    roi_head=dict(
        type='MetaStandardRoIHead',
        shared_head=dict(type='CLIPResLayer', layers=[3, 4, 6, 3], width=64),
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=1024,
            featmap_strides=[16]),
        bbox_head=dict(
            type='BBoxHeadCLIPPartitioned',
            with_cls=False,
            roi_feat_size=7,
            in_channels=2048,
            num_classes=500,
            zeroshot_path=[embeddings + 'coco_clip_a+cname_rn50_manyprompt.npy',
                           embeddings + 'obj365_clip_a+cname_rn50_manyprompt.npy',
                           embeddings + 'oid_clip_a+cname_rn50_manyprompt.npy'],
            cat_freq_path=[None, embeddings + 'object365_train_cat_info.json',
                           embeddings + 'oid_train_cat_info.json'],
            fed_loss_num_cat=50,
            reg_class_agnostic=True,
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False)),
    # As the original: gaussian soft-NMS (sigma 0.5, min_score 1e-3: mmcv's defaults). The bridged
    # Jittor box head post-processes, so this is jt_mm_plugins.ops.soft_nms (mmcv's semantics).
    test_cfg=dict(rcnn=dict(score_thr=0.0001,
                            nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian'),
                            max_per_img=100)))

# Each dataset's pipeline ends with AddDatasetId (after PackDetInputs), e.g. for COCO:
#   dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
#   dict(type='LoadProposals', num_max_proposals=2000), ...,
#   dict(type='PackDetInputs'), dict(type='AddDatasetId', dataset_id=0)
# and the three datasets go into dict(type='ConcatDataset', ignore_keys=['classes', 'palette']).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1), roi_head=dict(lr_mult=0.1))),
    clip_grad=dict(max_norm=35, norm_type=2))
