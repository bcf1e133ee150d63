"""UniDetector's CLIP box heads in Jittor (``bbox_heads/bbox_head_clip.py`` of
zhenyuw16/UniDetector): ``BBoxHeadCLIP`` (cosine classifier against CLIP text embeddings,
federated sigmoid loss) and ``BBoxHeadCLIPInference`` (probability calibration and the first
stage's proposal score). The partitioned multi-dataset head is in ``bbox_head_clip_partitioned.py``.
"""
import json
import os
import pickle
from typing import Dict, Optional, Sequence

import numpy as np

from jt_mm_plugins.bridge import register_jittor_module
from jt_mm_plugins.bridge.bbox_head import BridgedBBoxHead
from jt_mm_plugins.models.layers.attention_pool import CLIPAttentionPool2d
from jt_mm_plugins.models.losses.cross_entropy_loss import binary_cross_entropy_with_logits
from jt_mm_plugins.runtime import jt
from jt_mm_plugins.utils.errors import InputError
from .bbox_head import JittorBBoxHead, normal_init_

#: The fixed scale of the cosine logits (a temperature of 0.01; not learned).
LOGIT_SCALE = 100.0


def load_class_embeddings(path: Optional[str], num_classes: int, dim: int,
                          owner: str, key: str) -> np.ndarray:
    """CLIP text embeddings of ``path`` (a C x dim ``.npy``, float16 or float32) as the classifier
    matrix: transposed, a zero column appended for background, columns L2-normalised
    (dim x (C + 1); the zero column stays zero, so the background logit is always 0).

    ``path=None`` gives zeros, to be filled from a checkpoint (the matrix is a buffer)."""
    if path is None:
        return np.zeros((dim, num_classes + 1), np.float32)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{owner}: {key} file {path} does not exist')
    embeddings = np.load(path).astype(np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != dim:
        raise InputError(f'{owner}: {key} file {path} holds an array of shape '
                         f'{embeddings.shape}; expected (num_classes, {dim})')
    if embeddings.shape[0] != num_classes:
        raise InputError(f'{owner}: {key} file {path} holds {embeddings.shape[0]} class '
                         f'embeddings but num_classes is {num_classes}')
    weight = np.concatenate([embeddings.T, np.zeros((dim, 1), np.float32)], axis=1)
    return weight / np.maximum(np.linalg.norm(weight, axis=0, keepdims=True), 1e-12)


def load_sampling_mask(path: Optional[str], num_classes: int, owner: str, key: str) -> np.ndarray:
    """Classes the federated loss may draw: those with ``image_count > 0`` in an LVIS-style
    ``cat_info.json`` (sorted by ``id``); every class without a file."""
    if path is None:
        return np.ones(num_classes, bool)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{owner}: {key} file {path} does not exist')
    with open(path) as f:
        info = json.load(f)
    counts = np.array([c['image_count'] for c in sorted(info, key=lambda c: c['id'])])
    if len(counts) != num_classes:
        raise InputError(f'{owner}: {key} file {path} describes {len(counts)} classes but the '
                         f'label space has {num_classes}')
    return counts > 0


def federated_classes(labels: np.ndarray, num_classes: int, num_sample: int,
                      allowed: np.ndarray) -> np.ndarray:
    """The foreground classes the federated loss is taken on: the labels present (the background
    label ``num_classes`` counts towards ``num_sample`` but is no column), topped up to
    ``num_sample`` by a uniform draw without replacement among the ``allowed`` classes not
    present (numpy's global generator)."""
    appeared = np.unique(labels)
    fg = appeared[appeared < num_classes]
    if len(appeared) < num_sample:
        prob = allowed.astype(np.float64)
        prob[fg] = 0
        k = min(num_sample - len(appeared), int((prob > 0).sum()))
        if k > 0:
            more = np.random.choice(num_classes, k, replace=False, p=prob / prob.sum())
            fg = np.concatenate([fg, more])
    return np.sort(fg).astype(np.int64)


def federated_sigmoid_loss(logits: jt.Var, labels: np.ndarray, classes: np.ndarray,
                           num_classes: int) -> jt.Var:
    """sum over the RoIs and the ``classes`` columns of the sigmoid BCE against one-hot targets
    (background RoIs: all zero), divided by the number of RoIs. ``logits``: (B, num_classes + 1),
    the background column is dropped."""
    num_rois = logits.shape[0]
    if num_rois == 0:
        return logits.sum() * 0
    target = np.zeros((num_rois, num_classes), np.float32)
    fg = labels < num_classes
    target[np.nonzero(fg)[0], labels[fg]] = 1
    mask = np.zeros((1, num_classes), np.float32)
    mask[0, classes] = 1
    bce = binary_cross_entropy_with_logits(logits[:, :num_classes], jt.array(target))
    return (bce * jt.array(mask)).sum() / num_rois


def cosine_logits(features: jt.Var, weight: jt.Var) -> jt.Var:
    """``LOGIT_SCALE * normalize(features) @ weight`` (``weight``: normalised columns)."""
    norm = (features * features).sum(dim=1, keepdims=True).sqrt()
    return LOGIT_SCALE * jt.matmul(features / jt.maximum(norm, 1e-12), weight)


@register_jittor_module(bridge_base=BridgedBBoxHead)
class BBoxHeadCLIP(JittorBBoxHead):
    """UniDetector's CLIP box head (`Detecting Everything in the Open World
    <https://arxiv.org/abs/2303.11749>`_), in Jittor.

    RoI features (``in_channels`` x s x s, CLIP layer4's 2048 x 7 x 7) go through CLIP's
    attention pool (``attnpool``) to an ``embed_dim``-d vector ``x``; the class logits are
    ``100 * normalize(x) . normalize(E)`` against the CLIP text embeddings ``E`` of
    ``zeroshot_path`` plus a background logit that is always 0 (``zs_weight``, a buffer:
    embed_dim x (num_classes + 1)); ``fc_reg`` regresses boxes from ``x``. ``with_cls`` has no
    effect (as the original: the cosine classifier always runs).

    Loss: the federated sigmoid BCE (:func:`federated_sigmoid_loss`) on the classes present in
    the batch topped up to ``fed_loss_num_cat`` by a uniform draw (classes with zero
    ``image_count`` in ``cat_freq_path`` excluded), times ``loss_cls.loss_weight``; the box loss
    is :class:`JittorBBoxHead`'s (``loss_bbox``). Scores at test: sigmoid.

    Args:
        zeroshot_path (str, optional): ``.npy`` of CLIP text embeddings (num_classes x
            embed_dim). None: zeros, loaded later from a checkpoint.
        fed_loss_num_cat (int): Classes the federated loss is taken on. Defaults to 50.
        cat_freq_path (str, optional): LVIS-style ``cat_info.json``. Defaults to None.
        embed_dim (int): Output of the attention pool (CLIP's embedding size). Defaults to 1024.
        num_heads (int): Heads of the attention pool. Defaults to 32.
        **kwargs: :class:`JittorBBoxHead`'s (``in_channels``, ``num_classes``,
            ``roi_feat_size``, ``reg_class_agnostic``, ``bbox_coder``, ``loss_cls``,
            ``loss_bbox`` ...).
    """
    _torch_buffers = ('zs_weight', )

    def __init__(self,
                 zeroshot_path: Optional[str] = None,
                 fed_loss_num_cat: int = 50,
                 cat_freq_path: Optional[str] = None,
                 embed_dim: int = 1024,
                 num_heads: int = 32,
                 **kwargs) -> None:
        self.zeroshot_path = zeroshot_path
        self.fed_loss_num_cat = fed_loss_num_cat
        self.cat_freq_path = cat_freq_path
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        super().__init__(**kwargs)

    def _init_predictors(self, cls_in_features: int, reg_in_features: int) -> None:
        """The attention pool, the embedding buffer(s) and ``fc_reg`` (no ``fc_cls``)."""
        if self.roi_feat_size[0] != self.roi_feat_size[1]:
            raise InputError(f'{type(self).__name__}: the attention pool needs square RoI '
                             f'features, got roi_feat_size {self.roi_feat_size}')
        self.attnpool = CLIPAttentionPool2d(self.roi_feat_size[0], self.in_channels,
                                            self.num_heads, self.embed_dim)
        self.fc_cls = None
        self._init_class_embeddings()
        out_reg = self.bbox_coder.encode_size * (1 if self.reg_class_agnostic
                                                 else self.num_classes)
        self.fc_reg = jt.nn.Linear(self.embed_dim, out_reg) if self.with_reg else None

    def _init_class_embeddings(self) -> None:
        owner = type(self).__name__
        self.zs_weight = jt.array(load_class_embeddings(
            self.zeroshot_path, self.num_classes, self.embed_dim, owner, 'zeroshot_path'))
        self.zs_weight.stop_grad()
        self.sampling_mask = load_sampling_mask(self.cat_freq_path, self.num_classes, owner,
                                                'cat_freq_path')

    def init_weights(self) -> None:
        """``fc_reg`` ~ N(0, 0.001^2), zero bias (the attention pool keeps open_clip's init)."""
        if self.with_reg:
            normal_init_(self.fc_reg, std=0.001)

    def execute(self, x: jt.Var):
        """(n, in_channels, s, s) RoI features -> ``cls_score`` (n, num_classes + 1),
        ``bbox_pred`` (n, 4 or 4 * num_classes) or None."""
        features = self.attnpool(x)
        bbox_pred = self.fc_reg(features) if self.with_reg else None
        return self.classify(features), bbox_pred

    def classify(self, features: jt.Var):
        return cosine_logits(features, self.zs_weight)

    def loss(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
             reduction_override: Optional[str] = None) -> Dict[str, jt.Var]:
        """``loss_cls`` (federated sigmoid BCE) and ``loss_bbox`` (see the class docs)."""
        losses = super().loss(None, bbox_pred, rois, labels, label_weights, bbox_targets,
                              bbox_weights, reduction_override)
        if cls_score is not None:
            labels_np = labels.numpy().astype(np.int64)
            classes = federated_classes(labels_np, self.num_classes, self.fed_loss_num_cat,
                                        self.sampling_mask)
            losses['loss_cls'] = self.loss_cls.loss_weight * federated_sigmoid_loss(
                cls_score, labels_np, classes, self.num_classes)
        return losses

    def cls_probabilities(self, cls_score: jt.Var, roi: jt.Var, img_meta: dict) -> jt.Var:
        """Sigmoid of the logits (the background column is dropped by the NMS)."""
        return cls_score.sigmoid()


def load_detection_counts(path: str, num_classes: int, owner: str) -> np.ndarray:
    """Detections per class over a whole dataset in a raw mmdet result ``.pkl`` (per image, per
    class, an N x 5 array): the calibration prior."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{owner}: resultfile {path} does not exist')
    with open(path, 'rb') as f:
        results = pickle.load(f)
    counts = np.zeros(num_classes, np.float64)
    for i, per_class in enumerate(results):
        if len(per_class) != num_classes:
            raise InputError(f'{owner}: resultfile {path} has {len(per_class)} classes for image '
                             f'{i}, but num_classes is {num_classes}')
        counts += [len(dets) for dets in per_class]
    return counts


@register_jittor_module(bridge_base=BridgedBBoxHead)
class BBoxHeadCLIPInference(BBoxHeadCLIP):
    """UniDetector's test-time CLIP head: ``BBoxHeadCLIP`` whose score is
    ``s^beta * o^(1 - beta)``, ``s`` the sigmoid class probability, optionally calibrated
    (``s_c * w_c / mean(w)`` with ``w_c = n_c^-gamma``, ``n_c`` the detections of class c in the
    raw results ``resultfile`` of an uncalibrated run), ``o`` the first stage's proposal score
    (``img_meta['proposal_scores']``, set by ``MetaStandardRoIHead`` from the proposals'
    ``scores``).

    A class with zero raw detections would get an infinite weight in the original; here its
    count is taken as 1 (the largest weight any observed class can get).

    Args:
        beta (float): Weight of the class probability (0.3 in UniDetector's configs).
        withcalibration (bool): Whether to calibrate. Defaults to False.
        resultfile (str, optional): Raw result ``.pkl`` (needed with calibration).
        gamma (float, optional): Calibration exponent (0.6; needed with calibration).
        **kwargs: :class:`BBoxHeadCLIP`'s.
    """

    def __init__(self, beta: float, withcalibration: bool = False,
                 resultfile: Optional[str] = None, gamma: Optional[float] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta = beta
        self.withcalibration = withcalibration
        self.resultfile = resultfile
        self.gamma = gamma
        self.calibration_weight = None
        if withcalibration:
            owner = type(self).__name__
            if resultfile is None or gamma is None:
                raise InputError(f'{owner}: withcalibration=True needs resultfile and gamma')
            counts = np.maximum(load_detection_counts(resultfile, self.num_classes, owner), 1)
            weight = counts**(-float(gamma))
            self.calibration_weight = (weight / weight.mean()).astype(np.float32)

    def cls_probabilities(self, cls_score: jt.Var, roi: jt.Var, img_meta: dict) -> jt.Var:
        """(n, num_classes + 1): calibrated, proposal-weighted scores; background 0."""
        proposal_scores = img_meta.get('proposal_scores')
        if proposal_scores is None:
            raise KeyError(f"{type(self).__name__} needs the first stage's proposal scores in "
                           "img_meta['proposal_scores'] (use MetaStandardRoIHead with proposals "
                           'that carry scores, e.g. LoadProposals)')
        if proposal_scores.shape[0] != roi.shape[0]:
            raise InputError(f'{type(self).__name__}: {proposal_scores.shape[0]} proposal scores '
                             f'for {roi.shape[0]} RoIs')
        scores = cls_score[:, :self.num_classes].sigmoid()
        if self.calibration_weight is not None:
            scores = scores * jt.array(self.calibration_weight).unsqueeze(0)
        scores = scores.pow(self.beta) * proposal_scores.reshape(-1, 1).pow(1 - self.beta)
        return jt.concat([scores, jt.zeros((scores.shape[0], 1), dtype=scores.dtype)], dim=1)


__all__: Sequence[str] = ('BBoxHeadCLIP', 'BBoxHeadCLIPInference', 'load_class_embeddings',
                          'load_sampling_mask', 'federated_classes', 'federated_sigmoid_loss')
