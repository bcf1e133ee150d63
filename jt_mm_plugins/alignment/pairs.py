"""The Jittor components with a PyTorch reference, as (candidate, reference, inputs) builders.

Adding a pair is one entry: a function decorated with ``@alignment_pair('name', ...)`` that builds the
bridged Jittor module and its reference with identical (random) weights and returns sample inputs.
``tools/align.py``, ``tools/benchmark.py`` and the alignment tests all read this table.
"""
import contextlib
import importlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import torch

from .compare import DEFAULT_TOLERANCES, Tolerances, randomize_norm_statistics

Built = Tuple[torch.nn.Module, torch.nn.Module, List[torch.Tensor]]


@dataclass
class AlignmentPair:
    name: str
    description: str
    # (size, seed) -> (bridged Jittor module, PyTorch reference, positional inputs (tensors or
    # tuples of tensors))
    build: Callable[[str, int], Built]
    tolerances: Tolerances = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    # Also run a float64 copy of the reference as referee (see compare.py), inside
    # float64_context() (for references with float32-only ops).
    float64_referee: bool = False
    float64_context: Callable[[], ContextManager] = contextlib.nullcontext
    # The candidate also runs in float64 (a second build, ``.double()``): compared with the float64
    # reference on every output and gradient (compare.py). Only for candidates whose Jittor ops all
    # take float64 (the heads' target and loss code is float32).
    float64_candidate: bool = False
    # margins.record_selections' sort_cut for this pair's flow (every sort a top-k cut), if any
    sort_cut: Optional[int] = None

    def build_candidate64(self, size: str = 'small', seed: int = 0):
        """A float64 copy of the candidate, with the same weights as ``build(size, seed)``'s."""
        return self.build(size, seed)[0].double() if self.float64_candidate else None


ALIGNMENT_PAIRS: Dict[str, AlignmentPair] = {}


def alignment_pair(name: str, description: str, tolerances: Tolerances = None,
                   float64_referee: bool = False,
                   float64_context: Callable[[], ContextManager] = contextlib.nullcontext,
                   float64_candidate: bool = False, sort_cut: Optional[int] = None):

    def decorator(build):
        ALIGNMENT_PAIRS[name] = AlignmentPair(name, description, build,
                                              dict(tolerances or DEFAULT_TOLERANCES),
                                              float64_referee, float64_context, float64_candidate,
                                              sort_cut)
        return build

    return decorator


@contextlib.contextmanager
def mmcv_nms_accepts_float64():
    """mmcv's CPU NMS kernel takes float32 only; inside this block float64 boxes and scores are
    handed to it as float32 (NMS only selects indices, so a float64 referee stays float64)."""
    nms_module = importlib.import_module('mmcv.ops.nms')  # mmcv.ops.nms is also a function name
    original = nms_module.ext_module

    class _Float32NMS:
        def __getattr__(self, name):
            return getattr(original, name)

        @staticmethod
        def nms(boxes, scores, *args, **kwargs):
            return original.nms(boxes.float(), scores.float(), *args, **kwargs)

    nms_module.ext_module = _Float32NMS()
    try:
        yield
    finally:
        nms_module.ext_module = original


def get_pair(name: str) -> AlignmentPair:
    if name not in ALIGNMENT_PAIRS:
        raise KeyError(f'unknown alignment pair {name!r}; available: {sorted(ALIGNMENT_PAIRS)}')
    return ALIGNMENT_PAIRS[name]


def _sized(size: str, small, large):
    if size not in ('small', 'large'):
        raise ValueError(f'size must be "small" or "large", got {size!r}')
    return small if size == 'small' else large


def _load_identical(candidate: torch.nn.Module, reference: torch.nn.Module, seed: int) -> None:
    randomize_norm_statistics(reference, seed)
    own = candidate.state_dict()
    candidate.load_state_dict({k: v for k, v in reference.state_dict().items() if k in own},
                              strict=True)


@alignment_pair('clip_resnet', "CLIPResNet (Jittor) vs open_clip's ModifiedResNet trunk",
                float64_candidate=True)
def build_clip_resnet(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    layers, width, hw, batch = _sized(size, ([1, 1, 1, 1], 16, 64, 2), ([3, 4, 6, 3], 64, 224, 2))
    reference = MODELS.build(dict(type='OpenCLIPResNet', layers=layers, width=width))
    candidate = MODELS.build(dict(type='CLIPResNet', layers=layers, width=width))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(batch, 3, hw, hw)]


@alignment_pair('fpn', "JittorFPN vs mmdet's FPN (add_extra_convs='on_input')",
                float64_candidate=True)
def build_fpn(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    in_channels, out_channels, hw = _sized(size, ([8, 16, 32, 64], 16, 32),
                                           ([256, 512, 1024, 2048], 256, 200))
    cfg = dict(in_channels=in_channels, out_channels=out_channels, num_outs=5,
               add_extra_convs='on_input')
    reference = MODELS.build(dict(type='FPN', **cfg))
    candidate = MODELS.build(dict(type='JittorFPN', **cfg))
    _load_identical(candidate, reference, seed)
    feats = tuple(torch.randn(2, c, hw // 2**i, hw // 2**i) for i, c in enumerate(in_channels))
    return candidate, reference, [feats]  # FPN takes one argument: the tuple of levels


@alignment_pair('resnet', "JittorResNet vs mmdet's ResNet", float64_candidate=True)
def build_resnet(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    depth, hw = _sized(size, (18, 64), (50, 224))
    cfg = dict(depth=depth, out_indices=(0, 1, 2, 3), norm_eval=False)
    reference = MODELS.build(dict(type='ResNet', **cfg))
    candidate = MODELS.build(dict(type='JittorResNet', **cfg))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(2, 3, hw, hw)]



@alignment_pair('shufflenet_v2', "ShuffleNetV2 (NanoDet-Plus's backbone, LeakyReLU) vs torchvision's "
                'shufflenet_v2_x* trunk', float64_candidate=True)
def build_shufflenet_v2(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    from .nanodet_reference import TorchvisionTrunk
    torch.manual_seed(seed)
    model_size, hw = _sized(size, ('0.5x', 64), ('1.0x', 320))
    cfg = dict(model_size=model_size, out_stages=(2, 3, 4), activation='LeakyReLU')
    reference = TorchvisionTrunk(**cfg)
    candidate = MODELS.build(dict(type='ShuffleNetV2', **cfg))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(2, 3, hw, hw)]


@alignment_pair('ghost_pan', "GhostPAN (NanoDet-Plus's neck) vs the plain-torch GhostPAN written from "
                'the spec (alignment/nanodet_reference.py)', float64_candidate=True)
def build_ghost_pan(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    from .nanodet_reference import RefGhostPAN
    torch.manual_seed(seed)
    in_channels, out_channels, hw = _sized(size, ([8, 12, 16], 16, 16),
                                           ([116, 232, 464], 96, 40))  # NanoDet-Plus-m at 320
    cfg = dict(in_channels=in_channels, out_channels=out_channels, use_depthwise=True,
               kernel_size=5, num_extra_level=1)
    reference = RefGhostPAN(**cfg)
    candidate = MODELS.build(dict(type='GhostPAN', **cfg))
    _load_identical(candidate, reference, seed)
    # In train mode the Ghost shortcuts' first BN bias feeds a 1x1 conv and a batch-statistics BN
    # with nothing in between: its gradient is exactly 0, computed as rounding noise. Not trained
    # (both modes, both models), as in tests/test_ghost_pan.py.
    for model in (candidate, reference):
        for name, p in model.named_parameters():
            if name.endswith('shortcut.1.bias'):
                p.requires_grad_(False)
    feats = tuple(torch.randn(2, c, hw // 2**i, hw // 2**i) for i, c in enumerate(in_channels))
    return candidate, reference, [feats]


@alignment_pair('nanodet_plus', "NanoDet-Plus's inference graph (ShuffleNetV2 + GhostPAN + "
                'NanoDetPlusHead, pure Jittor detector, mode=tensor) vs torchvision trunk + the '
                "spec's GhostPAN and head (alignment/nanodet_reference.py)", float64_candidate=True)
def build_nanodet_plus(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    from .nanodet_reference import RefNanoDetPlusInference
    torch.manual_seed(seed)
    model_size, stage_channels, width, hw, batch = _sized(
        size, ('0.5x', [48, 96, 192], 16, 256, 2), ('1.0x', [116, 232, 464], 96, 320, 1))
    parts = dict(
        backbone=dict(model_size=model_size, out_stages=(2, 3, 4), activation='LeakyReLU'),
        neck=dict(in_channels=stage_channels, out_channels=width, use_depthwise=True,
                  kernel_size=5, num_extra_level=1),
        bbox_head=dict(num_classes=80, in_channels=width, feat_channels=width,
                       strides=(8, 16, 32, 64)))
    reference = RefNanoDetPlusInference(**parts)
    candidate = MODELS.build(dict(
        type='JittorSingleStageDetector', backbone=dict(type='ShuffleNetV2', **parts['backbone']),
        neck=dict(type='GhostPAN', **parts['neck']),
        bbox_head=dict(type='NanoDetPlusHead', **parts['bbox_head'])))
    _load_identical(candidate, reference, seed)
    for model in (candidate, reference):  # (see build_ghost_pan)
        for name, p in model.named_parameters():
            if name.endswith('shortcut.1.bias'):
                p.requires_grad_(False)
    return candidate, reference, [torch.randn(batch, 3, hw, hw)]

# --- Losses of heads and detectors ------------------------------------------------------------
class _LossProbe(torch.nn.Module):
    """Turns ``loss_fn(model, *inputs) -> dict of losses`` into a module whose output is compared;
    parameters keep the model's own names."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, *inputs):
        return self._loss_fn(self.model, *inputs)

    def named_parameters(self, *args, **kwargs):
        return self.model.named_parameters(*args, **kwargs)


def detection_batch(size: int = 96, boxes=((8., 10., 50., 60.), (40., 30., 90., 70.))):
    """Two images (the second smaller than the batch shape) with ground-truth ``boxes`` (labels 0
    and 2; scaled by 0.9 in the first image)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(0)
    samples, images = [], []
    for i, shape in enumerate([(size, size), (size - 16, size)]):
        sample = DetDataSample(
            metainfo=dict(img_shape=shape, ori_shape=shape, scale_factor=(1., 1.)))
        gt = InstanceData()
        gt.bboxes = torch.tensor(boxes) * (0.9 + 0.1 * i)
        gt.labels = torch.tensor([0, 2])
        sample.gt_instances = gt
        samples.append(sample)
        images.append((torch.rand(3, *shape, generator=generator) * 255).to(torch.uint8))
    return images, samples


def demo_detector_configs(candidate: str = 'faster_rcnn_r18_fpn_demo_jittor'):
    """The demo's mmdet Faster R-CNN and a Jittor twin (default: the pure-Jittor one); every anchor /
    proposal sampled, so no random choice separates the two."""
    from mmengine.config import Config
    configs = [Config.fromfile(f'configs/demo/{name}.py').model
               for name in ('faster_rcnn_r18_fpn_demo_mmdet', candidate)]
    for cfg in configs:
        cfg.train_cfg.rpn.sampler.num = 100000
        cfg.train_cfg.rcnn.sampler.num = 100000
    return configs


# The two-stage detector case of the alignment tests: few proposals, so that every selection keeps a
# margin that float32 decides (tests/test_faster_rcnn.py asserts them on a float64 run).
SMALL_RPN_NMS_PRE = 12  # per FPN level, train and test: the only sort in the flow (its cut)
SMALL_RPN_PROPOSALS = 16  # per image, after NMS
# of the seeds tried whose selections float32 decides (0, 2, 3, 7), the one with the most headroom
# in both modes (the tightest margin 3.0x / 2.2x the float32 bound in training / testing; seed 0:
# 1.6x / 1.3x); the faster_rcnn / jittor_heads pairs' seed 0 is this seed
SMALL_DETECTOR_SEED = 7
# 64x64 and 48x64 images; gt corners off the anchor grid's symmetries (the demo batch's gts have
# anchors with exactly equal IoU, ties that float32 may break either way)
SMALL_DETECTOR_BATCH = (64, ((5.3, 7.6, 33.1, 40.7), (26.2, 19.4, 58.7, 45.9)))


def small_detector_configs(candidate: str = 'faster_rcnn_r18_fpn_demo_jittor'):
    """:func:`demo_detector_configs` with ``SMALL_RPN_NMS_PRE`` / ``SMALL_RPN_PROPOSALS``
    proposals in training and testing (the demo's 2000 / 1000 give NMS thousands of pairs, some
    within float32 error of the IoU threshold)."""
    configs = demo_detector_configs(candidate)
    for cfg in configs:
        for stage in (cfg.train_cfg.rpn_proposal, cfg.test_cfg.rpn):
            stage.update(nms_pre=SMALL_RPN_NMS_PRE, max_per_img=SMALL_RPN_PROPOSALS)
    return configs


def spread_head_weights(detector: torch.nn.Module, seed: int) -> None:
    """Redraw the output layers of a Faster R-CNN's heads with a spread (mmdet initialises them
    N(0, 0.01) / N(0, 0.001): the scores then crowd together and the boxes sit on their anchors,
    whose IoUs repeat, so sorts, NMS and thresholds decide on gaps as small as float32's error;
    much larger weights saturate the sigmoid at 0 / 1, with the same effect)."""
    generator = torch.Generator().manual_seed(seed)
    # logits of a few units: scores neither crowded nor saturated
    layers = {'rpn_head.rpn_cls': 0.05, 'rpn_head.rpn_reg': 0.02, 'roi_head.bbox_head.fc_cls': 0.04,
              'roi_head.bbox_head.fc_reg': 0.05}
    modules = dict(detector.named_modules())
    with torch.no_grad():
        for name, std in layers.items():
            if name not in modules:  # no RPN head (FastRCNN)
                continue
            for p in modules[name].parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def _build_detectors(seed: int, configs: Tuple, spread: bool = False):
    """(reference, candidate, preprocessed detection batch) from (reference, candidate) configs;
    ``spread``: :func:`spread_head_weights`."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    ref_cfg, jit_cfg = configs
    torch.manual_seed(seed)
    reference, candidate = MODELS.build(ref_cfg), MODELS.build(jit_cfg)
    if spread:
        spread_head_weights(reference, seed)
    candidate.load_state_dict(reference.state_dict(), strict=True)
    images, samples = detection_batch(*(SMALL_DETECTOR_BATCH if spread else ()))
    data = reference.data_preprocessor({'inputs': images, 'data_samples': samples}, False)
    return reference, candidate, data


def small_faster_rcnn_twins(candidate: str = 'faster_rcnn_r18_fpn_demo_jittor',
                            seed: int = SMALL_DETECTOR_SEED):
    """(mmdet's Faster R-CNN, the ``configs/demo/{candidate}.py`` twin with its weights, the
    preprocessed batch) of the small case: :func:`small_detector_configs`,
    :func:`spread_head_weights`, ``SMALL_DETECTOR_BATCH``."""
    return _build_detectors(seed, small_detector_configs(candidate), spread=True)


def _detector_loss_pair(size: str, seed: int, configs: Tuple, spread: bool = False) -> Built:
    _sized(size, None, None)
    return _detector_loss_probes(*_build_detectors(seed, configs, spread))


def _detector_loss_probes(reference, candidate, data) -> Built:
    """The detectors' summed-loss probes on the batch (fresh copies of its data samples)."""
    import copy
    samples = data['data_samples']

    def loss(model, inputs):
        return model.loss(inputs, copy.deepcopy(samples))

    return _LossProbe(candidate, loss), _LossProbe(reference, loss), [data['inputs']]


@alignment_pair('faster_rcnn', "JittorFasterRCNN vs mmdet's FasterRCNN (R-18 FPN demo): all losses",
                tolerances={'output_abs': 1e-4, 'grad_rel': 1e-2}, float64_referee=True,
                float64_context=mmcv_nms_accepts_float64, sort_cut=SMALL_RPN_NMS_PRE)
def build_faster_rcnn(size: str = 'small', seed: int = 0) -> Built:
    return _detector_loss_pair(size, SMALL_DETECTOR_SEED + seed,
                               small_detector_configs('faster_rcnn_r18_fpn_demo_jittor'), spread=True)


@alignment_pair('jittor_heads', "mmdet's FasterRCNN with JittorRPNHead + JittorStandardRoIHead vs "
                "all mmdet (R-18 FPN demo): all losses",
                tolerances={'output_abs': 1e-4, 'grad_rel': 1e-2}, float64_referee=True,
                float64_context=mmcv_nms_accepts_float64, sort_cut=SMALL_RPN_NMS_PRE)
def build_jittor_heads(size: str = 'small', seed: int = 0) -> Built:
    return _detector_loss_pair(size, SMALL_DETECTOR_SEED + seed,
                               small_detector_configs('faster_rcnn_r18_fpn_jittor_heads_demo'),
                               spread=True)


def fast_rcnn_configs():
    """mmdet's ``FastRCNN`` and ``JittorFastRCNN``: the small demo Faster R-CNN pair
    (:func:`small_detector_configs`) without its RPN (``train_cfg`` / ``test_cfg``: ``rcnn``
    only)."""
    from mmengine.config import ConfigDict
    configs = small_detector_configs()
    for cfg, detector in zip(configs, ('FastRCNN', 'JittorFastRCNN')):
        cfg.type = detector
        cfg.pop('rpn_head')
        cfg.train_cfg = ConfigDict(rcnn=cfg.train_cfg.rcnn)
        cfg.test_cfg = ConfigDict(rcnn=cfg.test_cfg.rcnn)
    return configs


# proposals per image of the Fast R-CNN case
FAST_RCNN_PROPOSALS = 12


def small_fast_rcnn_twins(seed: int = SMALL_DETECTOR_SEED):
    """(mmdet's FastRCNN, JittorFastRCNN with its weights (loaded strictly), the preprocessed
    batch): :func:`fast_rcnn_configs`, :func:`spread_head_weights`, ``SMALL_DETECTOR_BATCH``, and
    in each data sample ``FAST_RCNN_PROPOSALS`` random proposals with scores
    (:func:`random_proposals`), as mmdet's ``LoadProposals`` + ``PackDetInputs`` give them."""
    from mmengine.structures import InstanceData
    reference, candidate, data = _build_detectors(seed, fast_rcnn_configs(), spread=True)
    for sample, (boxes, scores) in zip(data['data_samples'],
                                       random_proposals(data['data_samples'], seed,
                                                        FAST_RCNN_PROPOSALS)):
        sample.proposals = InstanceData(bboxes=boxes, scores=scores)
    return reference, candidate, data


@alignment_pair('fast_rcnn', "JittorFastRCNN vs mmdet's FastRCNN (R-18 FPN demo, given proposals): "
                'all losses', tolerances={'output_abs': 1e-4, 'grad_rel': 1e-2},
                float64_referee=True, float64_context=mmcv_nms_accepts_float64)
def build_fast_rcnn(size: str = 'small', seed: int = 0) -> Built:
    _sized(size, None, None)
    return _detector_loss_probes(*small_fast_rcnn_twins(SMALL_DETECTOR_SEED + seed))


def gfl_demo_configs(candidate: str):
    """The demo's mmdet GFL and a Jittor twin (GFL has no random sampling to remove)."""
    from mmengine.config import Config
    return tuple(Config.fromfile(f'configs/demo/{name}.py').model
                 for name in ('gfl_r18_fpn_demo_mmdet', candidate))


@alignment_pair('gfl', "JittorGFL vs mmdet's GFL (R-18 FPN demo): all losses",
                tolerances={'output_abs': 1e-4, 'grad_rel': 1e-2}, float64_referee=True)
def build_gfl(size: str = 'small', seed: int = 0) -> Built:
    return _detector_loss_pair(size, seed, gfl_demo_configs('gfl_r18_fpn_demo_jittor'))


@alignment_pair('gfl_head', "mmdet's GFL with JittorGFLHead vs all mmdet (R-18 FPN demo): all "
                'losses', tolerances={'output_abs': 1e-4, 'grad_rel': 1e-2}, float64_referee=True)
def build_gfl_head(size: str = 'small', seed: int = 0) -> Built:
    return _detector_loss_pair(size, seed, gfl_demo_configs('gfl_r18_fpn_jittor_head_demo'))


def _head_twins(part: str, jittor_type: str, seed: int):
    """mmdet's demo ``rpn_head`` / ``roi_head`` and its bridged Jittor twin with identical weights,
    each with the detector's train / test config of that stage, and the detection batch's samples.

    The bridged heads speak mmdet's head interface (jt_mm_plugins/bridge/heads.py), so both twins
    are called the same way, with the same mmdet structures."""
    import copy
    from mmdet.registry import MODELS
    ref_cfg, _ = demo_detector_configs()
    stage = {'rpn_head': 'rpn', 'roi_head': 'rcnn'}[part]
    head_cfg = copy.deepcopy(ref_cfg[part])
    head_cfg.update(train_cfg=ref_cfg.train_cfg[stage], test_cfg=ref_cfg.test_cfg[stage])
    torch.manual_seed(seed)
    reference = MODELS.build(head_cfg)
    candidate = MODELS.build(dict(head_cfg, type=jittor_type))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    _, samples = detection_batch()
    return head_cfg, reference, candidate, samples


@alignment_pair('rpn_head', "JittorRPNHead vs mmdet's RPNHead: losses on FPN-like features")
def build_rpn_head(size: str = 'small', seed: int = 0) -> Built:
    import copy
    _sized(size, None, None)
    head_cfg, reference, candidate, samples = _head_twins('rpn_head', 'JittorRPNHead', seed)
    for sample in samples:  # the RPN is class-agnostic
        sample.gt_instances.labels = torch.zeros_like(sample.gt_instances.labels)
        sample.set_metainfo(dict(pad_shape=(96, 96), batch_input_shape=(96, 96)))
    channels = head_cfg.in_channels
    feats = tuple(torch.randn(2, channels, 96 // s, 96 // s) for s in (4, 8, 16, 32, 64))

    def loss(head, x):
        return head.loss(x, copy.deepcopy(samples))

    return _LossProbe(candidate, loss), _LossProbe(reference, loss), [feats]


def random_proposals(samples, seed: int, num: int = 20) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(boxes (num, 4), scores (num,)) of each sample: corners in the first 70% of its image,
    sizes of 8 px plus up to 30% of it, uniform scores."""
    generator = torch.Generator().manual_seed(seed)
    proposals = []
    for sample in samples:
        h, w = sample.metainfo['img_shape']
        corners = torch.rand(num, 2, generator=generator) * torch.tensor([w * .7, h * .7])
        sizes = 8 + torch.rand(num, 2, generator=generator) * torch.tensor([w * .3, h * .3])
        proposals.append((torch.cat([corners, corners + sizes], 1),
                          torch.rand(num, generator=generator)))
    return proposals


@alignment_pair('roi_head', "JittorStandardRoIHead vs mmdet's StandardRoIHead: losses on fixed "
                'proposals')
def build_roi_head(size: str = 'small', seed: int = 0) -> Built:
    import copy
    from mmengine.structures import InstanceData
    _sized(size, None, None)
    head_cfg, reference, candidate, samples = _head_twins('roi_head', 'JittorStandardRoIHead', seed)
    channels = head_cfg.bbox_roi_extractor.out_channels
    feats = tuple(torch.randn(2, channels, 96 // s, 96 // s) for s in (4, 8, 16, 32))
    proposals = random_proposals(samples, seed)

    def loss(head, x):
        results = []
        for boxes, scores in proposals:
            result = InstanceData()
            result.bboxes, result.scores = boxes.clone(), scores.clone()
            results.append(result)
        return head.loss(x, results, copy.deepcopy(samples))

    return _LossProbe(candidate, loss), _LossProbe(reference, loss), [feats]


@alignment_pair('bridged_bbox_head', "JittorShared2FCBBoxHead inside mmdet's StandardRoIHead vs "
                "mmdet's Shared2FCBBoxHead there: losses on fixed proposals")
def build_bridged_bbox_head(size: str = 'small', seed: int = 0) -> Built:
    # the roi_head pair's reference, proposals and loss, with mmdet's RoI head on both sides
    from mmdet.registry import MODELS
    probe, reference, feats = build_roi_head(size, seed)
    head_cfg = _head_twins('roi_head', 'StandardRoIHead', seed)[0]
    head_cfg.bbox_head.type = 'JittorShared2FCBBoxHead'
    mixed = MODELS.build(head_cfg)
    mixed.load_state_dict(reference.model.state_dict(), strict=True)
    return _LossProbe(mixed, probe._loss_fn), reference, feats


class EvalNormCLIPLayer4(torch.nn.Module):
    """open_clip's ``layer4`` with its BatchNorms always in eval mode, as in UniDetector's
    CLIPResLayer (the reference of the ``clip_res_layer`` pair)."""

    def __init__(self, layer4: torch.nn.Module):
        super().__init__()
        self.layer4 = layer4

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, x):
        return self.layer4(x)


@alignment_pair('clip_res_layer', "UniDetector's CLIPResLayer + CLIPAttentionPool2d vs open_clip's "
                'ModifiedResNet layer4 + attnpool (BatchNorms in eval mode)')
def build_clip_res_layer(size: str = 'small', seed: int = 0) -> Built:
    from open_clip.modified_resnet import ModifiedResNet
    torch.manual_seed(seed)
    layers, width, roi, heads, batch = _sized(size, ([1, 1, 1, 2], 8, 8, 4, 3),
                                              ([3, 4, 6, 3], 64, 14, 32, 16))
    net = ModifiedResNet(layers, width * 8, heads, image_size=roi * 16, width=width)
    reference = torch.nn.Sequential(EvalNormCLIPLayer4(net.layer4), net.attnpool)
    randomize_norm_statistics(reference, seed)
    # one bridged Jittor module (tools/benchmark.py times its bare Jittor step)
    from jt_mm_plugins.bridge import JittorModuleWrapper
    from jt_mm_plugins.models.layers.attention_pool import CLIPAttentionPool2d
    from jt_mm_plugins.models.roi_heads.clip_res_layer import CLIPResLayer
    from jt_mm_plugins.runtime import jt
    candidate = JittorModuleWrapper.from_jittor_module(jt.nn.Sequential(
        CLIPResLayer(layers, width=width),
        CLIPAttentionPool2d(roi // 2, width * 32, heads, width * 8)))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    # k_proj.bias adds q.b to every token's logit: the softmax ignores it, its gradient is zero by
    # construction and computed values are rounding noise on both sides; frozen in both
    candidate.get_parameter('1.k_proj.bias').requires_grad_(False)
    net.attnpool.k_proj.bias.requires_grad_(False)
    return candidate, reference, [torch.randn(batch, width * 16, roi, roi)]


# --- UniDetector's 2nd-stage RoI head, pure vs mixed mode ----------------------------------------
# the assigner's IoU threshold of the case (every proposal's float64 IoU with the gts keeps 0.05
# away from it, asserted when the case is built)
UNIDETECTOR_POS_IOU = 0.5


def _iou64(a, b):
    import numpy as np
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = (np.prod(x[:, 2:] - x[:, :2], axis=1) for x in (a, b))
    return inter / (area_a[:, None] + area_b[None] - inter)


def unidetector_roi_head_case(size: str, tmp_dir: str, seed: int = 0):
    """UniDetector's 2nd-stage RoI head (``CLIPResLayer`` shared head, ``BBoxHeadCLIPPartitioned``
    with two datasets' embeddings written to ``tmp_dir``) and a batch of two images of datasets 1
    and 0: ``(cfg(roi_head_type), feats, samples, proposals)``. ``cfg`` gives the RoI head config for
    ``'MetaStandardRoIHead'`` (mixed) or ``'JittorStandardRoIHead'`` (pure); both use the Jittor
    RoI extractor, so both modes compute the same features. ``small``: CLIP width 2 (32 -> 64
    channels), 16-d embeddings of 3 / 5 classes, 4 x 4 C4 features; ``large``: RN50's layer4
    (1024 -> 2048 channels, RoIAlign 14), 1024-d embeddings of 80 / 365 classes (COCO / Objects365),
    32 x 32 C4 features (512-px images). Every sampled RoI is kept (sampler ``num`` above the
    candidates) and the federated draw takes every class (``fed_loss_num_cat`` above the label
    spaces), so no random choice separates the modes.
    """
    import os

    import numpy as np
    from mmdet.structures import DetDataSample
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData
    width, roi, dim, heads, classes, hw = _sized(size, (2, 8, 16, 4, (3, 5), 4),
                                                 (64, 14, 1024, 32, (80, 365), 32))
    paths = []
    for i, num in enumerate(classes):
        paths.append(os.path.join(tmp_dir, f'dataset{i}_embeddings.npy'))
        np.save(paths[-1], np.random.RandomState(seed + i).randn(num, dim).astype(np.float16))

    def cfg(roi_head_type: str) -> ConfigDict:
        return ConfigDict(
            type=roi_head_type,
            shared_head=dict(type='CLIPResLayer', layers=[1, 1, 1, 1] if size == 'small'
                             else [3, 4, 6, 3], width=width),
            bbox_roi_extractor=dict(type='JittorSingleRoIExtractor', out_channels=width * 16,
                                    featmap_strides=[16],
                                    roi_layer=dict(type='RoIAlign', output_size=roi,
                                                   sampling_ratio=0)),
            bbox_head=dict(type='BBoxHeadCLIPPartitioned', zeroshot_path=paths,
                           cat_freq_path=[None] * len(paths), num_classes=max(classes),
                           fed_loss_num_cat=1000, in_channels=width * 32,
                           roi_feat_size=roi // 2, embed_dim=dim, num_heads=heads,
                           reg_class_agnostic=True,
                           loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=UNIDETECTOR_POS_IOU,
                                         neg_iou_thr=UNIDETECTOR_POS_IOU,
                                         min_pos_iou=UNIDETECTOR_POS_IOU,
                                         match_low_quality=False, ignore_iof_thr=-1),
                           sampler=dict(type='RandomSampler', num=16, pos_fraction=0.5,
                                        add_gt_as_proposals=True),
                           pos_weight=-1),
            test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                          max_per_img=20))

    side = hw * 16.
    samples, proposals = [], []
    for dataset_id, labels in ((1, [classes[1] - 1, 1]), (0, [2])):
        sample = DetDataSample(metainfo=dict(img_shape=(side, side), scale_factor=(1., 1.),
                                             dataset_id=dataset_id))
        gts = torch.tensor([[4., 4., 30., 30.], [20., 10., 60., 50.]][:len(labels)]) * hw / 4
        sample.gt_instances = InstanceData(bboxes=gts, labels=torch.tensor(labels))
        samples.append(sample)
        boxes = torch.cat([gts + 1, torch.tensor([[0., 0., 63., 63.], [30., 30., 50., 62.]])
                           * hw / 4])
        ious = _iou64(np.concatenate([gts.numpy(), boxes.numpy()]).astype(np.float64),
                      gts.numpy().astype(np.float64))
        assert np.abs(ious - UNIDETECTOR_POS_IOU).min() > 0.05  # no assignment flips in float32
        proposals.append(InstanceData(bboxes=boxes, scores=torch.linspace(0.9, 0.3, len(boxes))))
    feats = torch.from_numpy(np.random.RandomState(seed).randn(2, width * 16, hw, hw)
                             .astype(np.float32))
    return cfg, feats, samples, proposals


_UNIDETECTOR_ROI_HEAD = ("UniDetector's 2nd-stage RoI head (CLIPResLayer + "
                         'BBoxHeadCLIPPartitioned, two datasets in one batch), training losses: '
                         'pure Jittor (JittorStandardRoIHead) vs ')
_UNIDETECTOR_TOLERANCES = {'output_abs': 1e-5, 'grad_rel': 1e-3}


@alignment_pair('unidetector_roi_head_modes', _UNIDETECTOR_ROI_HEAD + "mixed mode (mmdet's "
                'StandardRoIHead as MetaStandardRoIHead with the same Jittor parts)',
                tolerances=_UNIDETECTOR_TOLERANCES)
def build_unidetector_roi_head_modes(size: str = 'small', seed: int = 0) -> Built:
    pure, mixed, _, inputs = _unidetector_roi_heads(size, seed)
    return pure, mixed, inputs


def _unidetector_roi_heads(size: str, seed: int):
    """``(pure, mixed, twin)`` loss probes of the case (identical weights) and their inputs; the
    pure probe's ``jittor_module`` is its bare-Jittor loss (tools/benchmark.py's Jittor variant)."""
    import copy
    import tempfile
    from mmdet.registry import MODELS
    from jt_mm_plugins.bridge.data_samples import proposals_from_instances, unpack_data_samples
    from jt_mm_plugins.bridge.tensors import map_structure
    from jt_mm_plugins.bridge import torch_to_jittor
    from jt_mm_plugins.runtime import jt
    from . import unidetector_reference  # noqa: F401  (registers the twin's parts)
    with tempfile.TemporaryDirectory() as tmp_dir:  # the heads load the embeddings when built
        cfg, feats, samples, proposals = unidetector_roi_head_case(size, tmp_dir, seed)
        torch.manual_seed(seed)
        mixed = MODELS.build(cfg('MetaStandardRoIHead'))
        pure = MODELS.build(cfg('JittorStandardRoIHead'))
        twin_cfg = cfg('MetaStandardRoIHead')
        twin_cfg.shared_head.type = 'TorchCLIPResLayer'
        twin_cfg.bbox_roi_extractor.type = 'SingleRoIExtractor'
        twin_cfg.bbox_head.type = 'TorchBBoxHeadCLIPPartitioned'
        twin = MODELS.build(twin_cfg)
    pure.load_state_dict(mixed.state_dict(), strict=True)
    twin.load_state_dict(mixed.state_dict(), strict=True)

    def loss(head, x):
        # a training loss in either mode of tools/align.py: in eval mode the partitioned head
        # scores one dataset's classes only (test_dataset_id) and has no per-dataset loss
        head.train()
        return head.loss((x, ), copy.deepcopy(proposals), copy.deepcopy(samples))

    gts, metas = unpack_data_samples(samples, 'unidetector_roi_head')
    jt_proposals, jt_gts = map_structure(torch_to_jittor, (proposals_from_instances(proposals),
                                                            gts))

    class JittorLoss(jt.nn.Module):
        """The bare Jittor RoI head's training losses (no bridge crossing)."""

        def __init__(self, head):
            super().__init__()
            self.head = head

        def execute(self, x):
            self.head.train()
            losses = self.head.loss([x], jt_proposals, jt_gts, metas)
            return [v for k, v in losses.items() if 'loss' in k]

    pure_probe = _LossProbe(pure, loss)
    pure_probe.jittor_module = JittorLoss(pure.jittor_module)
    return pure_probe, _LossProbe(mixed, loss), _LossProbe(twin, loss), [feats]


@alignment_pair('unidetector_roi_head', _UNIDETECTOR_ROI_HEAD + "its PyTorch twin (open_clip's "
                "layer4, mmdet's SingleRoIExtractor, the partitioned head in torch; "
                'alignment/unidetector_reference.py)', tolerances=_UNIDETECTOR_TOLERANCES)
def build_unidetector_roi_head(size: str = 'small', seed: int = 0) -> Built:
    pure, _, twin, inputs = _unidetector_roi_heads(size, seed)
    # k_proj.bias adds the same q.b to every token's logit: zero gradient by construction, its
    # computed values rounding noise on both sides; frozen in both (as the clip_res_layer pair)
    for probe in (pure, twin):
        probe.model.get_parameter('bbox_head.attnpool.k_proj.bias').requires_grad_(False)
    return pure, twin, inputs


# --- DETR's transformer ------------------------------------------------------------------------
def _detr_transformer_sizes(size: str):
    """(embed, heads, ffn, layers, batch, feature h x w): tiny, or DETR R50's at 800x1216."""
    return _sized(size, (16, 2, 24, 2, 2, (4, 5)), (256, 8, 2048, 6, 2, (25, 38)))


def _detr_attention_cfgs(size: str):
    embed, heads, ffn, layers, _, _ = _detr_transformer_sizes(size)
    attn = dict(embed_dims=embed, num_heads=heads, dropout=0.0)
    ffn_cfg = dict(embed_dims=embed, feedforward_channels=ffn, num_fcs=2, ffn_drop=0.,
                   act_cfg=dict(type='ReLU', inplace=True))
    return attn, ffn_cfg, layers


def _detr_memory(size: str, seed: int):
    """Features, their positions and a padding mask (the second image's right / bottom third)."""
    embed, _, _, _, batch, (h, w) = _detr_transformer_sizes(size)
    gen = torch.Generator().manual_seed(seed + 1)
    mask = torch.zeros(batch, h, w, dtype=torch.bool)
    mask[1:, h - h // 3:] = True
    mask[1:, :, w - w // 3:] = True
    return (torch.randn(batch, h * w, embed, generator=gen),
            torch.randn(batch, h * w, embed, generator=gen), mask.view(batch, -1))


def _detr_twins(reference: torch.nn.Module, jittor_type: str, cfg: dict, seed: int):
    from mmdet.registry import MODELS
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if name.endswith('bias') else 0.5)
                    + (1.0 if 'norm' in name and name.endswith('weight') else 0.0))
    candidate = MODELS.build(dict(type=jittor_type, **cfg))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    return candidate


@alignment_pair('detr_encoder', "DETR's DetrTransformerEncoder (Jittor) vs mmdet's, with a key "
                'padding mask', float64_candidate=True)
def build_detr_encoder(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.models.layers.transformer import DetrTransformerEncoder
    attn, ffn_cfg, layers = _detr_attention_cfgs(size)
    cfg = dict(num_layers=layers, layer_cfg=dict(self_attn_cfg=attn, ffn_cfg=ffn_cfg))
    reference = DetrTransformerEncoder(**cfg)
    candidate = _detr_twins(reference, 'JittorDetrTransformerEncoder', cfg, seed)
    feat, pos, mask = _detr_memory(size, seed)
    return candidate, reference, [feat, pos, mask]


@alignment_pair('detr_decoder', "DETR's DetrTransformerDecoder (Jittor) vs mmdet's: every layer's "
                'output through post_norm, cross-attention with a key padding mask',
                float64_candidate=True)
def build_detr_decoder(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.models.layers.transformer import DetrTransformerDecoder
    attn, ffn_cfg, layers = _detr_attention_cfgs(size)
    cfg = dict(num_layers=layers, return_intermediate=True,
               layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn, ffn_cfg=ffn_cfg))
    reference = DetrTransformerDecoder(**cfg)
    candidate = _detr_twins(reference, 'JittorDetrTransformerDecoder', cfg, seed)
    memory, memory_pos, mask = _detr_memory(size, seed)
    queries = _sized(size, 5, 100)
    gen = torch.Generator().manual_seed(seed + 2)
    query_pos = torch.randn(memory.shape[0], queries, memory.shape[2], generator=gen)
    # Random queries: with DETR's zero queries the first self-attention attends over equal values
    # (its bias), so its in_proj gradients are zero by construction and only rounding noise.
    query = torch.randn(query_pos.shape, generator=gen)
    return candidate, reference, [query, memory, memory, query_pos, memory_pos, mask]


@alignment_pair('efficient_rep', "EfficientRep (Gold-YOLO's backbone: fuse_P2, SimCSPSPPF) vs "
                "yolov6detect's EfficientRep (its SPPF pools run unchained, the same values)",
                float64_candidate=True)
def build_efficient_rep(size: str = 'small', seed: int = 0) -> Built:
    from mmdet.registry import MODELS
    from .yolov6_reference import unchain_sppf_pools_, yolov6_module, yolov6_trained_bn_
    torch.manual_seed(seed)
    channels, repeats, hw = _sized(size, ([8, 16, 16, 24, 32], [1, 2, 2, 2, 2], 64),
                                   ([32, 64, 128, 256, 512], [1, 2, 4, 6, 2], 320))  # S
    reference = yolov6_module('models.efficientrep').EfficientRep(
        3, channels, repeats, fuse_P2=True, cspsppf=True)
    unchain_sppf_pools_(yolov6_trained_bn_(reference))
    candidate = MODELS.build(dict(type='EfficientRep', channels_list=channels,
                                  num_repeats=repeats, fuse_P2=True, cspsppf=True))
    _load_identical(candidate, reference, seed)
    return candidate, reference, [torch.randn(2, 3, hw, hw)]


@alignment_pair('repgd_neck', "RepGDNeck (Gold-YOLO's gather-and-distribute neck) vs the plain-torch "
                'RepGDNeck written from the spec (alignment/repgd_reference.py); ReLU6 inputs '
                'margin-checked on float64 runs', float64_candidate=True)
def build_repgd_neck(size: str = 'small', seed: int = 0) -> Built:
    """small: tests/test_repgd_neck.py's tiny neck and inputs; large: Gold-YOLO-S's neck on the
    C2..C5 of a 320-px image. Drop path off (random in training); norm affines x0.4 (see
    repgd_reference.AFFINE_SCALE); the biases whose gradients are exactly 0 by construction
    (ZERO_GRAD_BIASES, and TRAIN_ZERO_GRAD_BIASES in training) are not trained in either mode."""
    import copy
    from mmdet.registry import MODELS
    from jt_mm_plugins.models.backbones.efficient_rep import yolov6_channels, yolov6_repeats
    from jt_mm_plugins.models.necks.repgd_neck import GOLD_YOLO_S
    from .repgd_reference import (AFFINE_SCALE, BN, TINY, TRAIN_ZERO_GRAD_BIASES,
                                  ZERO_GRAD_BIASES, TorchRepGDNeck, assert_relu6_margins,
                                  make_inputs)
    from .yolov6_reference import randomise_calibrated_
    if _sized(size, 'small', 'large') == 'small':
        cfg, inputs, calibration = (copy.deepcopy(TINY), make_inputs(seed),
                                    make_inputs(seed + 1))
    else:
        cfg = dict(channels_list=yolov6_channels(GOLD_YOLO_S['channels_list'],
                                                 GOLD_YOLO_S['width_multiple']),
                   num_repeats=yolov6_repeats(GOLD_YOLO_S['num_repeats'],
                                              GOLD_YOLO_S['depth_multiple']),
                   extra_cfg=dict(GOLD_YOLO_S['extra_cfg'], norm_cfg=BN))
        gen = torch.Generator().manual_seed(seed)
        make = lambda: [torch.rand(2, c, 320 // s, 320 // s, generator=gen)  # noqa: E731
                        for c, s in zip(cfg['channels_list'][1:5], (4, 8, 16, 32))]
        inputs, calibration = make(), make()
    cfg['extra_cfg']['drop_path_rate'] = 0.0
    reference = randomise_calibrated_(TorchRepGDNeck(**cfg), calibration, seed, AFFINE_SCALE)
    for training in (False, True):
        assert_relu6_margins(reference, inputs, training)
    candidate = MODELS.build(dict(type='RepGDNeck', **cfg))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    for model in (candidate, reference):
        for name, p in model.named_parameters():
            if name.endswith(ZERO_GRAD_BIASES + TRAIN_ZERO_GRAD_BIASES):
                p.requires_grad_(False)
    return candidate, reference, [inputs]


@alignment_pair('effide_head', "EffiDeHead (Gold-YOLO's / YOLOv6's head, DFL) vs yolov6detect's "
                'Detect: training outputs (probabilities, distributions), eval output (YOLOv6\'s '
                'decoded boxes in stride units, scores)', float64_candidate=True)
def build_effide_head(size: str = 'small', seed: int = 0) -> Built:
    """small: 3 classes, levels of 8 / 16 / 32 channels of a 64-px image; large: Gold-YOLO-S's
    head (64 / 128 / 256 channels, 80 classes) at 640 px. Random calibrated weights
    (yolov6_reference.reference_detect)."""
    from mmdet.registry import MODELS
    from .yolov6_reference import DetectOutputs, EffiDeHeadOutputs, reference_detect
    channels, classes, image = _sized(size, ([8, 16, 32], 3, 64), ([64, 128, 256], 80, 640))
    gen = torch.Generator().manual_seed(seed)
    make = lambda: [torch.randn(2, c, image // s, image // s, generator=gen)  # noqa: E731
                    for c, s in zip(channels, (8, 16, 32))]
    inputs, calibration = make(), make()
    reference = DetectOutputs(reference_detect(channels, classes, calibration, seed))
    candidate = EffiDeHeadOutputs(MODELS.build(dict(type='EffiDeHead', num_classes=classes,
                                                    in_channels=channels)))
    candidate.load_state_dict(reference.state_dict(), strict=True)
    return candidate, reference, [inputs]
