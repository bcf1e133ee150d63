# UniDetector LVIS v0.5 inference (1230 classes) with the 2nd-stage model, mixed mode, without
# calibration: score = sigmoid(logit)^0.3 * proposal_score^0.7 (BBoxHeadCLIPInference; the
# proposal scores reach it through MetaStandardRoIHead). Mirrors zhenyuw16/UniDetector
# configs/inference/clip_decouple_faster_rcnn_r50_c4_1x_lvis_v0.5_2ndstage.py. Only the model is
# built by tests/test_unidetector_configs.py (the LVIS embeddings are not in this repository).
_base_ = './clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            _delete_=True,
            type='BBoxHeadCLIPInference',
            beta=0.3,
            roi_feat_size=7,
            in_channels=2048,
            num_classes=1230,
            zeroshot_path='data/metadata/lvis_v0.5_clip_a+cname_rn50_manyprompt.npy',
            reg_class_agnostic=True)),
    test_cfg=dict(rcnn=dict(max_per_img=300)))
