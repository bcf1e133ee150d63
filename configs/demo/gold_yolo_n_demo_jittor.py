# Gold-YOLO-N (every part in Jittor: EfficientRep, RepGDNeck, EffiDeHead with TAL) on the toy-shapes
# demo dataset, the demo's schedule (4 epochs, SGD 0.02, batch 4, 256 px) from random weights.
#   make demo DEMO_CONFIG=configs/demo/gold_yolo_n_demo_jittor.py
# The model is configs/gold_yolo/gold_yolo_n_coco.py's with 3 classes and YOLOv6's input scaling
# (pixels / 255); the batch is padded to a multiple of 32.
_base_ = ['./_base_/demo_shapes.py']

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

BN = dict(type='BN', requires_grad=True)
model = dict(
    type='GoldYOLO',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='EfficientRep', channels_list=[64, 128, 256, 512, 1024],
                  num_repeats=[1, 6, 12, 18, 6], width_multiple=0.25, depth_multiple=0.33,
                  fuse_P2=True, cspsppf=True),
    neck=dict(type='RepGDNeck',
              channels_list=[64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512],
              num_repeats=[1, 6, 12, 18, 6, 12, 12, 12, 12], width_multiple=0.25,
              depth_multiple=0.33,
              extra_cfg=dict(norm_cfg=BN, depths=2, fusion_in=480, ppa_in=352,
                             fusion_act=dict(type='ReLU6'), fuse_block_num=3, embed_dim_p=96,
                             embed_dim_n=352, key_dim=8, num_heads=4, mlp_ratios=1,
                             attn_ratios=2, c2t_stride=2, drop_path_rate=0.1,
                             trans_channels=[64, 32, 64, 128], pool_mode='torch')),
    bbox_head=dict(type='EffiDeHead', num_classes=3, in_channels=[32, 64, 128],
                   strides=[8, 16, 32], reg_max=16),
    test_cfg=dict(score_thr=0.03, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.65),
                  max_per_img=100))
