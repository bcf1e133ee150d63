# UniDetector LVIS v0.5 inference without calibration, pure-Jittor mode: the mixed config
# (clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py) as JittorFastRCNN with
# JittorStandardRoIHead (it hands the proposals' scores to BBoxHeadCLIPInference) and
# JittorSingleRoIExtractor; soft-NMS in Jittor. Only the model is built by
# tests/test_unidetector_configs.py.
_base_ = ['./clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py']

model = {{_base_.jittor_fast_rcnn}}
