# UniDetector LVIS v0.5 inference with probability calibration, pure-Jittor mode: the mixed config
# (clip_fast_rcnn_r50_c4_lvis_v0.5_inference_calibrated_mixed.py) as JittorFastRCNN (see
# clip_fast_rcnn_r50_c4_lvis_v0.5_inference_jittor.py). Only the model is built by
# tests/test_unidetector_configs.py.
_base_ = ['./clip_fast_rcnn_r50_c4_lvis_v0.5_inference_calibrated_mixed.py']

model = {{_base_.jittor_fast_rcnn}}
