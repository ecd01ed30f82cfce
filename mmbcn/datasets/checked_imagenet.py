"""``dataset=dict(type='CheckedImageNet', ...)``: mmpretrain's ``ImageNet``, its folders checked.

Reading a split from its folders (no ``ann_file``), it first runs
:func:`~mmbcn.datasets.class_folders.check_class_folders` against the ``train`` folder beside it,
so a missing or empty class folder is an error naming the folder and the fix rather than
shifted labels or a warning. With an ``ann_file`` it is mmpretrain's ``ImageNet`` unchanged.
Importing this module imports mmpretrain (the ``pretrain`` extra).
"""

import os.path as osp

from mmpretrain.datasets import ImageNet
from mmpretrain.registry import DATASETS

from .class_folders import check_class_folders


@DATASETS.register_module()
class CheckedImageNet(ImageNet):
    """mmpretrain's ``ImageNet`` that refuses class folders giving missing or shifted labels."""

    def _find_samples(self):
        split_dir = self.img_prefix
        train_dir = osp.join(osp.dirname(osp.normpath(split_dir)), 'train')
        reference = None if osp.normpath(train_dir) == osp.normpath(split_dir) else train_dir
        classes = self._metainfo.get('classes')
        check_class_folders(split_dir, reference, classes)
        return super()._find_samples()
