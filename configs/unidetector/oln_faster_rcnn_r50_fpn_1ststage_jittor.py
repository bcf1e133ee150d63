# UniDetector 1st stage (OLN proposals), pure-Jittor mode: the mixed config
# (oln_faster_rcnn_r50_fpn_1ststage_mixed.py) with every part in Jittor: JittorFasterRCNN,
# JittorResNet, JittorFPN, the OlnRPNHead, and JittorStandardRoIHead (it hands the RPN's scores to
# Shared2FCBBoxScoreHead as OlnRoIHead does) with JittorSingleRoIExtractor. Same parameter names
# and shapes as the mixed config. Only the model is built by tests/test_unidetector_configs.py;
# training on it has not been run.
_base_ = ['./oln_faster_rcnn_r50_fpn_1ststage_mixed.py']

model = dict(
    type='JittorFasterRCNN',
    backbone=dict(type='JittorResNet'),
    neck=dict(type='JittorFPN'),
    roi_head=dict(type='JittorStandardRoIHead',
                  bbox_roi_extractor=dict(type='JittorSingleRoIExtractor')))
