"""Drop-in contracts: what mmdet's own tests check of FPN, ResNet, RPNHead, StandardRoIHead and the
bbox heads, asserted on the mmdet module and its bridged Jittor twin side by side.

Written from the behaviours mmdet's public tests exercise (tests/test_models/test_necks,
test_backbones, test_dense_heads, test_roi_heads), not copied from them: every check runs on both
twins and asserts the same answer.

* Refusals: a configuration mmdet refuses raises, on the Jittor twin, an exception that the same
  ``except`` clause catches (mmdet's ``assert`` -> ``AssertionError``; ours are
  :class:`~jt_mm_plugins.utils.errors.InputError`, also a ``ValueError``).
* Public attributes: every public data attribute the mmdet module sets in its constructor is
  readable on the bridged twin with the same value.
* Structure and outputs: the same submodule names with the same types, the same output shapes.
"""
import pytest
import torch
from mmdet.registry import MODELS

from jt_mm_plugins.runtime import jt  # noqa: F401,I001  (configures Jittor first)
import jt_mm_plugins  # noqa: F401  (registers the Jittor twins)
from jt_mm_plugins.bridge.mirrors import is_data_attribute

FPN_ARGS = dict(in_channels=[8, 16, 32, 64], out_channels=8)
RESNET_ARGS = dict(depth=18, base_channels=8)
RPN_ARGS = dict(in_channels=8, feat_channels=8,
                anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                      strides=[4, 8, 16, 32, 64]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                target_stds=[1.0, 1.0, 1.0, 1.0]))
BBOX_HEAD_ARGS = dict(in_channels=8, fc_out_channels=16, roi_feat_size=7, num_classes=3)

# (mmdet type, Jittor type, constructor arguments mmdet refuses, what our message names)
REFUSED = [
    ('FPN', 'JittorFPN', dict(FPN_ARGS, in_channels=(8, 16, 32, 64), num_outs=4), 'in_channels'),
    ('FPN', 'JittorFPN', dict(FPN_ARGS, start_level=1, num_outs=2), 'num_outs'),
    ('FPN', 'JittorFPN', dict(FPN_ARGS, start_level=1, end_level=4, num_outs=2), 'end_level'),
    ('FPN', 'JittorFPN', dict(FPN_ARGS, start_level=1, end_level=2, num_outs=3), 'num_outs'),
    ('FPN', 'JittorFPN', dict(FPN_ARGS, num_outs=5, add_extra_convs='on_nothing'),
     'add_extra_convs'),
    ('FPN', 'JittorFPN', dict(FPN_ARGS, num_outs=5, add_extra_convs=1), 'add_extra_convs'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, depth=42), 'depth'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, num_stages=0), 'num_stages'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, num_stages=5), 'num_stages'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, strides=(1, 2, 2)), 'strides'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, out_indices=(0, 4)), 'out_indices'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, depth=50, style='tf'), 'style'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, pretrained='a.pth',
                                    init_cfg=dict(type='Pretrained', checkpoint='a.pth')), 'pretrained'),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, pretrained=123), 'pretrained'),
    ('RPNHead', 'JittorRPNHead', dict(RPN_ARGS, num_classes=2), 'num_classes'),
    ('Shared2FCBBoxHead', 'JittorShared2FCBBoxHead', dict(BBOX_HEAD_ARGS, with_cls=False,
                                                          with_reg=False), 'with_reg'),
    ('ConvFCBBoxHead', 'JittorConvFCBBoxHead', dict(BBOX_HEAD_ARGS, num_shared_fcs=0),
     'fcs'),
    ('ConvFCBBoxHead', 'JittorConvFCBBoxHead', dict(BBOX_HEAD_ARGS, num_shared_fcs=1,
                                                    num_cls_convs=1), 'num_shared_fcs'),
    ('ConvFCBBoxHead', 'JittorConvFCBBoxHead', dict(BBOX_HEAD_ARGS, num_shared_fcs=1,
                                                    with_cls=False, num_cls_fcs=1), 'with_cls'),
]


def mmdet_error(mmdet_type, kwargs):
    with pytest.raises(Exception) as info:
        MODELS.build(dict(type=mmdet_type, **kwargs))
    return type(info.value)


@pytest.mark.parametrize('mmdet_type,jittor_type,kwargs,culprit', REFUSED,
                         ids=[f'{t}-{i}' for i, (t, _, _, _) in enumerate(REFUSED)])
def test_refused_configurations_raise_what_mmdet_raises(mmdet_type, jittor_type, kwargs, culprit):
    expected = mmdet_error(mmdet_type, kwargs)
    with pytest.raises(expected, match=culprit):
        MODELS.build(dict(type=jittor_type, **kwargs))


def test_fpn_refuses_the_wrong_number_of_levels_as_mmdet():
    feats = [torch.randn(1, c, 8, 8) for c in (8, 16, 32)]
    for name in ('FPN', 'JittorFPN'):
        with pytest.raises(AssertionError):
            MODELS.build(dict(type=name, **FPN_ARGS, num_outs=4))(feats)


# --------------------------------------------------------------------------------------------------
# Twins built from the same valid configuration
# --------------------------------------------------------------------------------------------------
FPN_CASES = [
    dict(num_outs=4),
    dict(num_outs=5, start_level=1, add_extra_convs=True),
    dict(num_outs=2, start_level=1, end_level=2),
    dict(num_outs=5, add_extra_convs='on_lateral'),
    dict(num_outs=6, add_extra_convs='on_output', relu_before_extra_convs=True),
    dict(num_outs=4, norm_cfg=dict(type='BN'), no_norm_on_lateral=True),
    dict(num_outs=4, upsample_cfg=dict(mode='bilinear')),
    dict(num_outs=4, upsample_cfg=dict(scale_factor=2)),
]
TWINS = ([('FPN', 'JittorFPN', dict(FPN_ARGS, **case)) for case in FPN_CASES] + [
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, out_indices=(0, 1, 2, 3))),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, num_stages=3, out_indices=(1, 2),
                                    strides=(1, 2, 2), dilations=(1, 1, 1), frozen_stages=1)),
    ('ResNet', 'JittorResNet', dict(RESNET_ARGS, depth=50, style='caffe', norm_eval=True)),
    ('RPNHead', 'JittorRPNHead', dict(RPN_ARGS, num_convs=2)),
    ('Shared2FCBBoxHead', 'JittorShared2FCBBoxHead', dict(BBOX_HEAD_ARGS)),
    ('Shared2FCBBoxHead', 'JittorShared2FCBBoxHead', dict(BBOX_HEAD_ARGS,
                                                          reg_class_agnostic=True)),
    ('ConvFCBBoxHead', 'JittorConvFCBBoxHead', dict(BBOX_HEAD_ARGS, num_shared_convs=1,
                                                    num_shared_fcs=1, num_cls_fcs=1,
                                                    num_reg_fcs=1)),
])
TWIN_IDS = [f'{t}-{i}' for i, (t, _, _) in enumerate(TWINS)]


@pytest.fixture(scope='module', params=range(len(TWINS)), ids=TWIN_IDS)
def twins(request):
    mmdet_type, jittor_type, kwargs = TWINS[request.param]
    torch.manual_seed(0)
    reference = MODELS.build(dict(type=mmdet_type, **kwargs))
    candidate = MODELS.build(dict(type=jittor_type, **kwargs))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    return mmdet_type, candidate, reference


def twin_inputs(mmdet_type, reference):
    torch.manual_seed(1)
    if mmdet_type == 'FPN':
        return (tuple(torch.randn(2, c, 32 // 2**i, 32 // 2**i)
                      for i, c in enumerate(reference.in_channels)), )
    if mmdet_type == 'ResNet':
        return (torch.randn(2, 3, 64, 64), )
    if mmdet_type == 'RPNHead':
        return (tuple(torch.randn(2, 8, 64 // 2**i, 64 // 2**i) for i in range(5)), )
    return (torch.randn(5, 8, 7, 7), )  # bbox heads: RoI features


# Constructor attributes of mmdet modules that describe PyTorch machinery, not the model.
TORCH_ONLY_ATTRIBUTES = {'training', 'init_cfg', 'fp16_enabled', 'dump_patches',
                         'call_super_init'}


def public_data_attributes(module):
    return {k: v for k, v in vars(module).items()
            if not k.startswith('_') and k not in TORCH_ONLY_ATTRIBUTES and is_data_attribute(v)}


def test_public_attributes_are_the_twins(twins):
    mmdet_type, candidate, reference = twins
    expected = public_data_attributes(reference)
    assert expected, 'nothing to compare'
    missing = sorted(k for k in expected if not hasattr(candidate, k))
    assert not missing, f'{mmdet_type}: the bridged twin lacks {missing}'
    for name, value in expected.items():
        got = getattr(candidate, name)
        if isinstance(value, (tuple, list)) and isinstance(got, (tuple, list)):
            got, value = list(got), list(value)  # Jittor keeps some tuples as lists
        assert got == value, f'{mmdet_type}.{name}: {got!r} != {value!r}'


def test_submodules_have_the_twins_names_and_types(twins):
    mmdet_type, candidate, reference = twins
    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.modules.batchnorm._BatchNorm,
             torch.nn.GroupNorm)

    def layers(model):
        return {n: next(k.__name__ for k in kinds if isinstance(m, k))
                for n, m in model.named_modules() if isinstance(m, kinds)}

    assert layers(candidate) == layers(reference)
    for name, module in reference.named_children():  # top-level containers index alike
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
            assert len(getattr(candidate, name)) == len(module), name


def test_outputs_have_the_twins_structure_and_shapes(twins):
    mmdet_type, candidate, reference = twins
    inputs = twin_inputs(mmdet_type, reference)
    candidate.eval()
    reference.eval()
    with torch.no_grad():
        got, expected = candidate(*inputs), reference(*inputs)

    def shapes(out):
        if isinstance(out, torch.Tensor):
            return tuple(out.shape)
        return [shapes(o) for o in out]

    assert type(got) is type(expected)
    assert shapes(got) == shapes(expected)


def test_standard_roi_head_contract():
    """StandardRoIHead: what mmdet's detectors ask of it (with_bbox / with_shared_head / with_mask,
    num_classes of its bbox head), its configs, layer names and types, refusals."""
    from jt_mm_plugins.alignment.pairs import demo_detector_configs
    ref_cfg, _ = demo_detector_configs()
    head_cfg = dict(ref_cfg.roi_head, train_cfg=ref_cfg.train_cfg.rcnn,
                    test_cfg=ref_cfg.test_cfg.rcnn)
    torch.manual_seed(0)
    reference = MODELS.build(head_cfg)
    candidate = MODELS.build(dict(head_cfg, type='JittorStandardRoIHead'))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    for name in ('with_bbox', 'with_shared_head', 'with_mask'):
        assert getattr(candidate, name) == getattr(reference, name), name
    assert candidate.bbox_head.num_classes == reference.bbox_head.num_classes
    assert candidate.bbox_head.reg_class_agnostic == reference.bbox_head.reg_class_agnostic
    for name in ('train_cfg', 'test_cfg'):
        assert dict(getattr(candidate, name)) == dict(getattr(reference, name)), name
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    assert {n: type(m).__name__ for n, m in candidate.named_modules() if isinstance(m, kinds)} == \
        {n: type(m).__name__ for n, m in reference.named_modules() if isinstance(m, kinds)}
    # a bbox head without its RoI extractor: refused by both, caught by the same except clause
    expected = mmdet_error('StandardRoIHead', dict(head_cfg, bbox_roi_extractor=None))
    with pytest.raises(expected, match='bbox_roi_extractor'):
        MODELS.build(dict(head_cfg, type='JittorStandardRoIHead', bbox_roi_extractor=None))
