"""A small synthetic dataset in real COCO and real PASCAL VOC layouts, made from a seed.

Each image shows up to three non-overlapping shapes on a noisy background. The class of a shape
is its kind (rectangle, ellipse, triangle); its colour is drawn around a hue that belongs to the
class, so a small network learns the task in a few hundred CPU iterations. The same scenes are
written twice:

* COCO: ``coco/{train,val}/*.jpg`` and ``coco/annotations/instances_{train,val}.json`` with
  polygon instance masks, boxes and areas, as ``mmdet.datasets.CocoDataset`` reads them;
* VOC: ``voc/JPEGImages/*.jpg``, ``voc/SegmentationClass/*.png`` (palette PNGs, 0 = background)
  and ``voc/ImageSets/Segmentation/{train,val}.txt``, as ``mmseg.datasets.PascalVOCDataset``.

A classification set of one shape per image is written in ImageNet's folder layout,
``imagenet/{train,val}/<class>/*.JPEG``, as mmpretrain's ``ImageNet`` dataset reads it (the
demo pretrains a backbone on it, then fine-tunes the detector from that backbone).

Nothing binary is committed: :func:`ensure_demo_data` writes the files on first use and rewrites
them only when the generation parameters change.
"""

import json
import math
import os
import os.path as osp
from dataclasses import asdict, dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ('rectangle', 'ellipse', 'triangle')
CLASS_HUES = ((220, 60, 50), (60, 200, 70), (60, 90, 230))  # mean RGB colour per class
PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (0, 0, 128)]  # background + classes
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class DemoDataSpec:
    """What to generate; a change of any field regenerates the data."""

    seed: int = 0
    num_train: int = 48
    num_val: int = 16
    image_size: int = 96
    max_shapes: int = 3
    num_train_per_class: int = 40  # classification set (ImageNet layout)
    num_val_per_class: int = 12
    class_image_size: int = 64
    version: int = GENERATOR_VERSION


@dataclass
class Shape:
    label: int  # 0-based index into CLASSES
    polygon: List[Tuple[float, float]]


def _random_shape(rng: np.random.Generator, size: int, label: int) -> Shape:
    extent = rng.uniform(0.2, 0.4) * size
    cx, cy = rng.uniform(extent / 2 + 1, size - extent / 2 - 1, size=2)
    if label == 0:  # axis-aligned rectangle with a random aspect ratio
        w, h = extent, extent * rng.uniform(0.6, 1.0)
        polygon = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2),
                   (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    elif label == 1:  # ellipse, as a 24-gon
        rx, ry = extent / 2, extent / 2 * rng.uniform(0.6, 1.0)
        polygon = [(cx + rx * math.cos(t), cy + ry * math.sin(t))
                   for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    else:  # upright triangle
        polygon = [(cx, cy - extent / 2), (cx + extent / 2, cy + extent / 2),
                   (cx - extent / 2, cy + extent / 2)]
    return Shape(label, [(float(x), float(y)) for x, y in polygon])


def _bbox(polygon) -> Tuple[float, float, float, float]:
    xs, ys = zip(*polygon, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _overlaps(a, b, margin=2.0) -> bool:
    return not (a[2] + margin < b[0] or b[2] + margin < a[0] or a[3] + margin < b[1]
                or b[3] + margin < a[1])


def _noisy_background(rng: np.random.Generator, size: int) -> Image.Image:
    background = rng.integers(20, 90, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    return Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))


def _draw(rng: np.random.Generator, draw: ImageDraw.ImageDraw, shape: Shape) -> None:
    colour = np.clip(np.array(CLASS_HUES[shape.label]) + rng.integers(-30, 31, 3), 0, 255)
    draw.polygon(shape.polygon, fill=tuple(int(c) for c in colour))


def make_scene(rng: np.random.Generator, size: int, max_shapes: int):
    """One image (H, W, 3) uint8 and its shapes, none overlapping another."""
    image = _noisy_background(rng, size)
    draw = ImageDraw.Draw(image)
    shapes: List[Shape] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            shape = _random_shape(rng, size, int(rng.integers(len(CLASSES))))
            if not any(_overlaps(_bbox(shape.polygon), _bbox(s.polygon)) for s in shapes):
                shapes.append(shape)
                _draw(rng, draw, shape)
                break
    return np.asarray(image), shapes


def make_object_image(rng: np.random.Generator, size: int, label: int) -> np.ndarray:
    """One image (H, W, 3) uint8 showing one shape of class ``label``."""
    image = _noisy_background(rng, size)
    _draw(rng, ImageDraw.Draw(image), _random_shape(rng, size, label))
    return np.asarray(image)


def _label_map(shapes: List[Shape], size: int) -> Image.Image:
    """VOC class map: 0 background, k + 1 for class k, as a palette PNG."""
    label = Image.new('P', (size, size), 0)
    draw = ImageDraw.Draw(label)
    for shape in shapes:
        draw.polygon(shape.polygon, fill=shape.label + 1)
    label.putpalette([c for rgb in PALETTE for c in rgb] + [0] * (768 - 3 * len(PALETTE)))
    return label


def _coco_annotation(shape: Shape, ann_id: int, image_id: int, size: int) -> dict:
    mask = np.asarray(_label_map([shape], size)) > 0
    x0, y0, x1, y1 = _bbox(shape.polygon)
    return dict(id=ann_id, image_id=image_id, category_id=shape.label + 1, iscrowd=0,
                bbox=[x0, y0, x1 - x0, y1 - y0], area=float(mask.sum()),
                segmentation=[[coord for point in shape.polygon for coord in point]])


def write_demo_data(root: str, spec: DemoDataSpec = DemoDataSpec()) -> None:
    """Write the COCO and VOC copies of the scenes under ``root``."""
    rng = np.random.default_rng(spec.seed)
    voc = osp.join(root, 'voc')
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(osp.join(voc, sub), exist_ok=True)
    os.makedirs(osp.join(root, 'coco', 'annotations'), exist_ok=True)
    ann_id = 1
    for split, count in (('train', spec.num_train), ('val', spec.num_val)):
        coco_dir = osp.join(root, 'coco', split)
        os.makedirs(coco_dir, exist_ok=True)
        images, annotations, names = [], [], []
        for index in range(count):
            image_id = index + 1
            name = f'{split}_{index:05d}'
            pixels, shapes = make_scene(rng, spec.image_size, spec.max_shapes)
            Image.fromarray(pixels).save(osp.join(coco_dir, name + '.jpg'), quality=95)
            Image.fromarray(pixels).save(osp.join(voc, 'JPEGImages', name + '.jpg'), quality=95)
            _label_map(shapes, spec.image_size).save(
                osp.join(voc, 'SegmentationClass', name + '.png'))
            images.append(dict(id=image_id, file_name=name + '.jpg', width=spec.image_size,
                               height=spec.image_size))
            for shape in shapes:
                annotations.append(_coco_annotation(shape, ann_id, image_id, spec.image_size))
                ann_id += 1
            names.append(name)
        categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
        with open(osp.join(root, 'coco', 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
        with open(osp.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(names) + '\n')


def write_classification_data(root: str, spec: DemoDataSpec = DemoDataSpec()) -> None:
    """Write ``root/imagenet/{train,val}/<class>/*.JPEG``: ImageNet's folder layout."""
    rng = np.random.default_rng(spec.seed + 1)
    for split, count in (('train', spec.num_train_per_class), ('val', spec.num_val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = osp.join(root, 'imagenet', split, name)
            os.makedirs(folder, exist_ok=True)
            for index in range(count):
                pixels = make_object_image(rng, spec.class_image_size, label)
                Image.fromarray(pixels).save(osp.join(folder, f'{split}_{index:05d}.JPEG'),
                                             quality=95)


def ensure_demo_data(root: str = 'data/mmbcn_demo', spec: DemoDataSpec = DemoDataSpec()) -> str:
    """Generate the demo data under ``root`` unless the same spec was generated there before."""
    marker = osp.join(root, 'spec.json')
    wanted = asdict(spec)
    if osp.exists(marker):
        with open(marker) as f:
            if json.load(f) == wanted:
                return root
    write_demo_data(root, spec)
    write_classification_data(root, spec)
    with open(marker, 'w') as f:
        json.dump(wanted, f)
    return root
