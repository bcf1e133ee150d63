# As clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py, with probability calibration: the prior
# is the number of detections per class in the raw results of the uncalibrated run
# (raw_lvis_results.pkl), gamma 0.6.
_base_ = './clip_fast_rcnn_r50_c4_lvis_v0.5_inference_mixed.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(withcalibration=True, resultfile='raw_lvis_results.pkl', gamma=0.6)))
