# Mixed DETR R50 150e on COCO: mmdet's DETR, ResNet-50 and ChannelMapper in PyTorch, with the Jittor
# positional encoding, transformer encoder and decoder, and DETR head bridged in
# (ConfigurableDETR: mmdet's DETR taking those types from the config; jt_mm_plugins/bridge/detr.py).
# Parameter names are mmdet's: an mmdet DETR checkpoint loads strictly. Not trained here.
_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'

custom_imports = dict(imports=['jt_mm_plugins'], allow_failed_imports=False)

model = dict(
    type='ConfigurableDETR',
    positional_encoding=dict(type='JittorSinePositionalEncoding'),
    encoder=dict(type='JittorDetrTransformerEncoder'),
    decoder=dict(type='JittorDetrTransformerDecoder'),
    bbox_head=dict(type='JittorDETRHead'))
