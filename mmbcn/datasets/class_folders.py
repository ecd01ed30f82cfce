"""Checks of an image-classification split in ImageNet's folder layout: ``<split>/<class>/*``.

mmpretrain reads such a folder by listing its sub-folders in sorted order: the i-th folder is
label i. A class folder missing from one split therefore shifts every later label of that split
without an error, and an empty class folder only logs a warning. :func:`check_class_folders`
turns both into an error that names the folder and the fix, before anything is trained.
"""

import os
import os.path as osp
from typing import List, Optional, Sequence

# The extensions mmpretrain's folder datasets read.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
LAYOUT = 'one sub-folder of images per class, as ImageNet: train/<class>/*.JPEG'


class ClassFolderError(ValueError):
    """A classification split whose folders would give missing or shifted labels."""


def class_folders(split_dir: str) -> List[str]:
    """The class folder names of a split, sorted (mmpretrain's label order)."""
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())


def _has_image(folder: str) -> bool:
    for _root, _dirs, files in os.walk(folder):
        if any(name.lower().endswith(IMAGE_EXTENSIONS) for name in files):
            return True
    return False


def check_class_folders(split_dir: str, reference_dir: Optional[str] = None,
                        classes: Optional[Sequence[str]] = None) -> List[str]:
    """Raise :class:`ClassFolderError` unless ``split_dir`` is a usable split; return its classes.

    Args:
        split_dir: the split's folder (``data_root/<data_prefix>``).
        reference_dir: another split (the training one) whose class folders this one must
            repeat, so that label i means the same class in both.
        classes: the class names of the config's ``metainfo``, one per folder, when given.
    """
    if not osp.isdir(split_dir):
        raise ClassFolderError(f'{split_dir}: no such folder. Point data_root / data_prefix at '
                               f'a folder with {LAYOUT}.')
    folders = class_folders(split_dir)
    if not folders:
        raise ClassFolderError(f'{split_dir}: no class folders. Expected {LAYOUT}.')
    empty = [name for name in folders if not _has_image(osp.join(split_dir, name))]
    if empty:
        raise ClassFolderError(
            f'{osp.join(split_dir, empty[0])}: no images ({len(empty)} class folder(s) empty: '
            f'{", ".join(empty[:5])}). Add images with one of the extensions '
            f'{", ".join(IMAGE_EXTENSIONS)}, or remove the class from every split.')
    if reference_dir is not None and osp.isdir(reference_dir):
        expected = class_folders(reference_dir)
        missing = sorted(set(expected) - set(folders))
        extra = sorted(set(folders) - set(expected))
        if missing or extra:
            what = (f'class folder(s) missing: {", ".join(missing[:5])}' if missing else
                    f'class folder(s) not in {reference_dir}: {", ".join(extra[:5])}')
            raise ClassFolderError(
                f'{split_dir}: {what}. Labels come from the sorted folder names, so both splits '
                f'need the same class folders ({len(expected)} in {reference_dir}, {len(folders)} '
                f'here): add the missing classes with their images, or remove them from '
                f'{reference_dir}.')
    if classes is not None and len(classes) != len(folders):
        raise ClassFolderError(
            f'{split_dir}: {len(folders)} class folders, but the config names {len(classes)} '
            f'classes (metainfo.classes). Give one class name per folder, in sorted folder order.')
    return folders
