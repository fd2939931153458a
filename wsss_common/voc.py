"""Reader for a dataset in the PASCAL VOC 2012 directory layout.

    VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png        palette PNGs (train + val), 255 = void
      SegmentationClassAug/<id>.png     optional (train_aug + val)
      Annotations/<id>.xml              the image-level labels (a mask is the fallback for ids without one)
      ImageSets/Segmentation/{train,train_aug,val}.txt

Image ids are strings (``2007_000032``) and are never parsed as numbers. The same code reads the real VOCdevkit and
the synthetic set that ``wsss_common.synthetic`` writes.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Hashable, Iterable

import numpy as np

from .io import DataError, load_label_png, load_rgb, read_json, write_json_atomic

IGNORE = 255
LABELS_FORMAT = "wsss-image-labels/1"

# PASCAL VOC 2012 class names, background first (configs/voc12.yaml repeats them).
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


def read_split_ids(root: str | Path, split: str) -> list[str]:
    """Ids listed in ImageSets/Segmentation/<split>.txt (first token of each non-empty line), as strings."""
    path = Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise DataError(f"split list not found: {path}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"split list is empty: {path}")
    if len(set(ids)) != len(ids):
        raise DataError(f"split list has duplicate ids: {path}")
    return ids


def image_path(root: str | Path, image_id: str) -> Path:
    return Path(root) / "JPEGImages" / f"{image_id}.jpg"


def mask_path(root: str | Path, image_id: str) -> Path | None:
    """The ground-truth mask of an id: SegmentationClass first, then SegmentationClassAug; None if neither."""
    for folder in ("SegmentationClass", "SegmentationClassAug"):
        p = Path(root) / folder / f"{image_id}.png"
        if p.is_file():
            return p
    return None


def load_image(root: str | Path, image_id: str) -> np.ndarray:
    return load_rgb(image_path(root, image_id))


class DecodedStore:
    """``load(key)`` for a known set of keys: with ``keep``, every key is decoded once here and kept in memory;
    without it each call reads the file. A training set reads each image every epoch, and with ``num_workers: 0``
    (the demo) the decoding runs in the training process on one core while the other waits: about half of an
    epoch's 0.7 s of data loading for the demo's 1000 JPEGs, 0.5 of IRN's 1.2 s with its IR labels
    (bench/bench_data_loading.py, session 20). Kept arrays are read-only, so an augmentation that wrote into its input fails
    instead of changing the later epochs. ``load`` must be picklable (a function or ``functools.partial``) for
    loader workers."""

    def __init__(self, load: Callable[[Hashable], np.ndarray], keys: Iterable[Hashable], keep: bool):
        self.load = load
        self.kept: dict | None = None
        if keep:
            self.kept = {}
            for key in keys:
                array = load(key)
                array.setflags(write=False)
                self.kept[key] = array

    def __call__(self, key: Hashable) -> np.ndarray:
        return self.load(key) if self.kept is None else self.kept[key]

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (0 without ``keep``)."""
        return sum(a.nbytes for a in self.kept.values()) if self.kept else 0


def load_mask(root: str | Path, image_id: str) -> np.ndarray:
    p = mask_path(root, image_id)
    if p is None:
        raise DataError(
            f"no ground-truth mask for {image_id}: neither {Path(root) / 'SegmentationClass' / (image_id + '.png')}"
            f" nor the SegmentationClassAug one exists")
    return load_label_png(p)


def labels_from_mask(mask: np.ndarray, num_classes: int, *, source: str = "mask") -> list[int]:
    """Foreground class ids (1..C-1) present in a mask; 0 and 255 are not labels. Out-of-range ids are an error."""
    present = np.unique(mask)
    bad = [int(v) for v in present if v != IGNORE and v >= num_classes]
    if bad:
        raise DataError(f"{source}: class ids {bad} are outside 0..{num_classes - 1} (and not 255)")
    return [int(v) for v in present if 0 < v < num_classes]


def labels_from_annotation(xml_path: str | Path, class_names: list[str]) -> list[int]:
    """Foreground class ids from the <object><name> tags of a VOC annotation (every object counts, as in IRN)."""
    xml_path = Path(xml_path)
    try:
        tree = ET.parse(xml_path)
    except FileNotFoundError:
        raise DataError(f"missing annotation file: {xml_path}") from None
    except ET.ParseError as e:
        raise DataError(f"corrupt annotation file: {xml_path} ({e})") from None
    index = {name: i for i, name in enumerate(class_names)}
    found = set()
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in index or index[name] == 0:
            raise DataError(f"{xml_path}: object name {name!r} is not a foreground class of data.class_names")
        found.add(index[name])
    return sorted(found)


def image_labels(root: str | Path, image_id: str, class_names: list[str]) -> tuple[list[int], str]:
    """Image-level labels of one id and where they came from: ``annotations`` (every ``<name>`` of
    Annotations/<id>.xml, as IRN's cls_labels.npy) or, only for an id without XML, ``masks`` (the classes of its
    mask). Weak supervision reads the XML; the mask is a fallback for datasets that ship no annotations."""
    xml = Path(root) / "Annotations" / f"{image_id}.xml"
    if xml.is_file():
        return labels_from_annotation(xml, class_names), "annotations"
    p = mask_path(root, image_id)
    if p is not None:
        return labels_from_mask(load_label_png(p), len(class_names), source=str(p)), "masks"
    raise DataError(f"no annotation and no mask for {image_id} under {root} (looked for {xml})")


def build_label_cache(root: str | Path, split: str, class_names: list[str],
                      progress: bool = False) -> dict:
    """Labels of every id of a split, as the JSON object written to results/<exp>/data/labels/<split>.json;
    ``sources`` counts the ids labelled from the XML annotations and from masks."""
    ids = read_split_ids(root, split)
    it: Iterable[str] = ids
    if progress:
        from tqdm import tqdm
        it = tqdm(ids, desc=f"labels {split}", mininterval=5)
    labels, sources = {}, {"annotations": 0, "masks": 0}
    for i in it:
        labels[i], source = image_labels(root, i, class_names)
        sources[source] += 1
    return {"format": LABELS_FORMAT, "split": split, "class_names": list(class_names), "sources": sources,
            "labels": labels}


def label_sources(path: str | Path) -> dict | None:
    """``{"annotations": n, "masks": m}`` of a label cache (None for a cache written before sources were kept)."""
    return read_json(path).get("sources")


def save_label_cache(path: str | Path, cache: dict) -> None:
    write_json_atomic(path, cache)


def load_label_cache(path: str | Path, class_names: list[str] | None = None) -> dict[str, list[int]]:
    """id -> sorted foreground class ids. Checks the format tag and, if given, that the class names match."""
    obj = read_json(path)
    if not isinstance(obj, dict) or obj.get("format") != LABELS_FORMAT:
        raise DataError(f"{path} is not an image-label cache of format {LABELS_FORMAT}")
    if class_names is not None and list(obj["class_names"]) != list(class_names):
        raise DataError(f"{path} was built for other class names; rebuild it")
    return {str(k): [int(c) for c in v] for k, v in obj["labels"].items()}


def multi_hot(labels: list[int], num_classes: int) -> np.ndarray:
    """Foreground multi-hot vector of length C-1 (index c-1 for class id c), float32."""
    v = np.zeros(num_classes - 1, np.float32)
    for c in labels:
        v[c - 1] = 1.0
    return v
