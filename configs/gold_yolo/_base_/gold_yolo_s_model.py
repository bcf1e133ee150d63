# Gold-YOLO-S's model (configs/gold_yolo-s.py of the original), every part in Jittor; shared by
# configs/gold_yolo/*.py and configs/demo/gold_yolo_n_demo_jittor.py (see gold_yolo_s_coco.py).
custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

BN = dict(type='BN', requires_grad=True)
model = dict(
    type='GoldYOLO',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0.0, 0.0, 0.0],
                           std=[255.0, 255.0, 255.0], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='EfficientRep', channels_list=[64, 128, 256, 512, 1024],
                  num_repeats=[1, 6, 12, 18, 6], width_multiple=0.5, depth_multiple=0.33,
                  fuse_P2=True, cspsppf=True),
    neck=dict(type='RepGDNeck',
              channels_list=[64, 128, 256, 512, 1024, 256, 128, 128, 256, 256, 512],
              num_repeats=[1, 6, 12, 18, 6, 12, 12, 12, 12], width_multiple=0.5,
              depth_multiple=0.33,
              extra_cfg=dict(norm_cfg=BN, depths=2, fusion_in=960, ppa_in=704,
                             fusion_act=dict(type='ReLU6'), fuse_block_num=3, embed_dim_p=128,
                             embed_dim_n=704, key_dim=8, num_heads=4, mlp_ratios=1,
                             attn_ratios=2, c2t_stride=2, drop_path_rate=0.1,
                             trans_channels=[128, 64, 128, 256], pool_mode='torch')),
    bbox_head=dict(type='EffiDeHead', num_classes=80, in_channels=[64, 128, 256],
                   strides=[8, 16, 32], reg_max=16, atss_warmup_epoch=0, iou_type='giou'),
    test_cfg=dict(score_thr=0.03, nms_pre=-1, nms=dict(type='nms', iou_threshold=0.65),
                  max_per_img=300))
