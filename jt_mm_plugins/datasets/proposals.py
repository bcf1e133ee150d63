"""mmdet detection datasets that read a proposal file (``proposal_file``, the format of mmdet's
``LoadProposals``) with clear errors, for UniDetector's 2nd stage.

mmdet's ``BaseDetDataset.load_proposals`` asserts that the file has as many entries as the
dataset has images and then looks each image up by ``'<folder>/<file name>'``: a proposal file
for another dataset or a missing image ends in a bare ``AssertionError`` or ``KeyError``. The
``...WithProposals`` datasets below read the same file and name the file, the annotation file and
the images instead; when the entries carry ``img_id`` (``tools/generate_proposals.py`` writes it)
they also refuse a file whose image ids do not match the annotation file's. Otherwise they are
mmdet's datasets.
"""
import os.path as osp
from typing import Any, Dict, List

from mmdet.datasets import (CocoDataset, LVISV05Dataset, LVISV1Dataset, Objects365V1Dataset,
                            Objects365V2Dataset)
from mmdet.registry import DATASETS
from mmengine.fileio import load

from jt_mm_plugins.utils.errors import InputError


def proposal_key(img_path: str) -> str:
    """The key of an image in a proposal file: ``'<parent folder>/<file name>'`` (mmdet's)."""
    return osp.join(osp.basename(osp.dirname(img_path)), osp.basename(img_path))


def match_proposals(proposals: Any, data_list: List[Dict], proposal_file: str,
                    ann_file: str, owner: str) -> None:
    """Attach ``proposals[key]`` to every entry of ``data_list`` as ``'proposals'``, or raise an
    error naming the files and the first culprits."""
    if not isinstance(proposals, dict):
        raise InputError(f'{owner}: proposal_file {proposal_file} holds a '
                         f'{type(proposals).__name__}; expected a dict {{"<folder>/<file>": '
                         "{'bboxes', 'scores'}} (tools/generate_proposals.py, mmdet's "
                         'DumpProposals)')
    missing, other_ids = [], []
    for info in data_list:
        key = proposal_key(info['img_path'])
        entry = proposals.get(key)
        if entry is None:
            missing.append(key)
            continue
        if 'bboxes' not in entry:
            raise InputError(f"{owner}: proposal_file {proposal_file}: entry {key!r} has no "
                             "'bboxes'")
        if 'img_id' in entry and 'img_id' in info and int(entry['img_id']) != int(info['img_id']):
            other_ids.append((key, int(entry['img_id']), int(info['img_id'])))
        info['proposals'] = entry
    if missing and len(missing) == len(data_list):
        raise InputError(f'{owner}: proposal_file {proposal_file} has proposals for none of the '
                         f'{len(data_list)} images of ann_file {ann_file} (e.g. {missing[0]!r}; '
                         f'the file has {sorted(proposals)[:2]}...): it was made for another '
                         'dataset')
    if missing:
        raise InputError(f'{owner}: proposal_file {proposal_file} has no proposals for '
                         f'{len(missing)} of the {len(data_list)} images of ann_file '
                         f'{ann_file}, e.g. {missing[:3]}')
    if other_ids:
        key, theirs, ours = other_ids[0]
        raise InputError(f'{owner}: proposal_file {proposal_file} was made for another dataset: '
                         f'{len(other_ids)} images have other ids than in ann_file {ann_file}, '
                         f'e.g. {key!r} is img_id {theirs} there and {ours} here')


class CheckedProposalsMixin:
    """``load_proposals`` with clear errors (see the module docs); mix in before an mmdet
    ``BaseDetDataset``."""

    def load_proposals(self) -> None:
        path = self.proposal_file
        if not osp.isabs(path) and self.data_root:
            path = osp.join(self.data_root, path)
        self.proposal_file = path
        owner = type(self).__name__
        if not osp.isfile(path):
            raise FileNotFoundError(f'{owner}: proposal_file {path} does not exist (make it '
                                    'with tools/generate_proposals.py)')
        match_proposals(load(path, backend_args=self.backend_args), self.data_list, path,
                        self.ann_file, owner)


#: The registered ``<mmdet dataset>WithProposals`` classes, by name.
DATASETS_WITH_PROPOSALS = {}
for _base in (CocoDataset, LVISV05Dataset, LVISV1Dataset, Objects365V1Dataset,
              Objects365V2Dataset):
    _cls = type(f'{_base.__name__}WithProposals', (CheckedProposalsMixin, _base), dict(
        __doc__=f"mmdet's ``{_base.__name__}`` whose ``proposal_file`` is checked against its "
        'images (:class:`CheckedProposalsMixin`).',
        __module__=__name__))
    DATASETS.register_module(module=_cls)
    DATASETS_WITH_PROPOSALS[_cls.__name__] = _cls
    globals()[_cls.__name__] = _cls

__all__ = ['CheckedProposalsMixin', 'DATASETS_WITH_PROPOSALS', 'match_proposals',
           'proposal_key'] + list(DATASETS_WITH_PROPOSALS)
