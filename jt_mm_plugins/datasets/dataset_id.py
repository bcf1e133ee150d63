"""``dataset_id`` in each sample's metainfo, for multi-dataset training (UniDetector's partitioned
head) without forking mmdet's datasets."""
from typing import Any, Dict

from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class AddDatasetId(BaseTransform):
    """Tag every sample of a dataset with ``dataset_id``.

    Put it last in each dataset's pipeline, after ``PackDetInputs``: it sets
    ``data_samples.metainfo['dataset_id']``. Before packing it sets ``results['dataset_id']``,
    which ``PackDetInputs`` keeps only if its ``meta_keys`` name ``'dataset_id'``. Then
    concatenate the datasets (mmengine's ``ConcatDataset``, ``ignore_keys=['classes',
    'palette']`` when their classes differ)::

        dict(type='ConcatDataset', ignore_keys=['classes', 'palette'], datasets=[
            dict(type='CocoDataset', ..., pipeline=[..., dict(type='PackDetInputs'),
                                                    dict(type='AddDatasetId', dataset_id=0)]),
            dict(type='Objects365V2Dataset', ..., pipeline=[..., dict(type='PackDetInputs'),
                                                            dict(type='AddDatasetId',
                                                                 dataset_id=1)])])

    Args:
        dataset_id (int): Index of the dataset (of its embeddings in the partitioned head).
    """

    def __init__(self, dataset_id: int) -> None:
        if not isinstance(dataset_id, int) or dataset_id < 0:
            raise ValueError(f'AddDatasetId: dataset_id must be an int >= 0, got {dataset_id!r}')
        self.dataset_id = dataset_id

    def transform(self, results: Dict[str, Any]) -> Dict[str, Any]:
        if 'data_samples' in results:
            results['data_samples'].set_metainfo(dict(dataset_id=self.dataset_id))
        else:
            results['dataset_id'] = self.dataset_id
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(dataset_id={self.dataset_id})'
