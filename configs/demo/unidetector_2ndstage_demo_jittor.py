# UniDetector's 2nd-stage model on the toy-shapes demo data, pure-Jittor mode: the mixed demo
# (unidetector_2ndstage_demo_mixed.py, see there for the data, the class embeddings and the
# differences from the original) with the type of the detector and of each part replaced by its
# Jittor name; JittorStandardRoIHead hands each sampling result its image's metainfo.
#   python tools/train.py configs/demo/unidetector_2ndstage_demo_jittor.py
_base_ = ['./unidetector_2ndstage_demo_mixed.py']

model = dict(
    type='JittorFasterRCNN',
    rpn_head=dict(type='JittorRPNHead'),
    roi_head=dict(type='JittorStandardRoIHead',
                  bbox_roi_extractor=dict(type='JittorSingleRoIExtractor')))
