"""Shared by the DETR tests: a batch that mixes an ordinary image, an image without ground truth
and an image with more ground truths than queries, and the float64 decision margin of a Hungarian
matching."""
from typing import List

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

BATCH_SHAPE = (48, 48)


def detr_samples(num_queries: int = 6, num_classes: int = 3) -> List[DetDataSample]:
    """Three images of different sizes padded to 48x48: three boxes; no box; num_queries + 2
    boxes (more ground truths than queries)."""
    gen = torch.Generator().manual_seed(7)
    many = torch.rand(num_queries + 2, 4, generator=gen) * 20
    many = torch.cat([many[:, :2], many[:, :2] + many[:, 2:] + 2], 1)
    images = [(torch.tensor([[1., 2, 20, 25], [5, 5, 30, 31], [0, 10, 12, 40]]),
               torch.tensor([0, 2, 1]), (48, 40)),
              (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (40, 32)),
              (many, torch.arange(num_queries + 2) % num_classes, BATCH_SHAPE)]
    samples = []
    for bboxes, labels, shape in images:
        sample = DetDataSample(metainfo=dict(img_shape=shape, batch_input_shape=BATCH_SHAPE,
                                             ori_shape=shape, scale_factor=(0.5, 0.8)))
        sample.gt_instances = InstanceData(bboxes=bboxes, labels=labels)
        samples.append(sample)
    return samples


def matching_margin(cost: np.ndarray) -> float:
    """Cost of the second-best one-to-one matching minus that of the best (inf when the best is
    the only one): forbidding each edge of the optimum in turn and solving again finds it, since
    any other matching of the same size lacks one of those edges."""
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    big = (np.abs(cost).max() + 1) * (min(cost.shape) + 1) * 4
    second = np.inf
    for r, c in zip(rows, cols):
        forbidden = cost.copy()
        forbidden[r, c] = big
        alt_rows, alt_cols = linear_sum_assignment(forbidden)
        alt = forbidden[alt_rows, alt_cols].sum()
        if alt < big / 2:
            second = min(second, alt)
    return float(second - best)


def assert_matching_decided(cost32: np.ndarray, cost64: np.ndarray, where: str) -> None:
    """The float64 optimum leads the second best by more than 10x the float32 error of a whole
    matching's cost (min(n, m) entries, each off by at most max|cost32 - cost64|), so float32
    costs (mmdet's or Jittor's, within that error) pick the same matching."""
    error = float(np.abs(np.asarray(cost32, np.float64) - cost64).max())
    bound = 10 * 2 * min(cost64.shape) * max(error, 1e-7)
    margin = matching_margin(cost64)
    assert margin > bound, f'{where}: matching margin {margin:.3g} <= 10x float32 bound {bound:.3g}'


def assert_matchings_decided(assigner, outs32, outs64, samples) -> None:
    """Every decoder layer's and image's matching decided by float32: costs from mmdet's match
    costs (``assigner.match_costs``) on a float32 and a float64 run's head outputs
    ((cls_scores, bbox_preds), each (layers, bs, queries, ...))."""
    for layer in range(outs32[0].shape[0]):
        for i, sample in enumerate(samples):
            gt = sample.gt_instances
            if len(gt) == 0:
                continue
            costs = []
            for cls, boxes in (outs32, outs64):
                h, w = sample.img_shape
                factor = torch.tensor([w, h, w, h], dtype=boxes.dtype)
                preds = InstanceData(scores=cls[layer, i],
                                     bboxes=bbox_cxcywh_to_xyxy(boxes[layer, i]) * factor)
                gts = InstanceData(bboxes=gt.bboxes.to(boxes.dtype), labels=gt.labels)
                costs.append(sum(c(pred_instances=preds, gt_instances=gts,
                                   img_meta=sample.metainfo)
                                 for c in assigner.match_costs).numpy())
            assert_matching_decided(costs[0], costs[1], f'layer {layer} image {i}')


def assert_predictions_decided(cls_scores64: torch.Tensor, max_per_img: int) -> None:
    """Softmax predictions from float64 logits (bs, queries, classes + 1): every query's class
    argmax, and the order of the best ``max_per_img`` + 1 scores, lead by more than 1e-5."""
    probs = cls_scores64.softmax(-1)[..., :-1]
    top2 = probs.topk(2, dim=-1).values
    assert float((top2[..., 0] - top2[..., 1]).min()) > 1e-5, 'class argmax within 1e-5'
    best = probs.max(-1).values.sort(-1, descending=True).values[:, :max_per_img + 1]
    assert float((best[:, :-1] - best[:, 1:]).min()) > 1e-5, 'score order within 1e-5'
