# UniDetector 2nd stage, multi-dataset, pure-Jittor mode: the mixed config
# (clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py) with every part in Jittor: JittorFastRCNN
# (each image's proposals from its data sample, i.e. from the 1st stage's proposal files through
# LoadProposals), JittorStandardRoIHead (shared_head CLIPResLayer; sampling results carry each
# image's metainfo, so dataset_id reaches BBoxHeadCLIPPartitioned) and JittorSingleRoIExtractor.
# Same parameter names and shapes as the mixed config (its checkpoints load strictly).
# Only the model is built by tests/test_unidetector_configs.py; training on it has not been run.
_base_ = ['./clip_partitioned_fast_rcnn_r50_c4_2ndstage_mixed.py']  # with ./_base_/clip_c4.py

model = {{_base_.jittor_fast_rcnn}}
