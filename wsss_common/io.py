"""Atomic file writing and the small file formats every stage shares.

Every output is written to a temporary name in the same folder and then renamed, so a killed job never leaves a
half-written file behind under the final name.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image


class DataError(ValueError):
    """A file is missing, unreadable or malformed; the message names the file."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not valid JSON: {path} ({e})") from None


def save_npz_atomic(path: str | os.PathLike, **arrays: Any) -> None:
    """Uncompressed npz, no pickled objects (every value must be a plain numpy array or scalar)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    pickled = [k for k, v in arrays.items() if v.dtype == object]
    if pickled:
        raise ValueError(f"{path}: arrays {pickled} would be pickled; store plain numeric/string arrays")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"missing file: {path}") from None
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
        raise DataError(f"corrupt npz file: {path} ({e})") from None


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), as a flat [r, g, b, ...] list of 3*n ints."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


_PALETTE = voc_palette()


def save_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write an HxW uint8 label map as a VOC palette PNG (255 = ignore/void), atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {labels.shape} for {path}")
    if labels.dtype != np.uint8:
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise ValueError(f"label values outside 0..255 for {path}")
        labels = labels.astype(np.uint8)
    img = Image.fromarray(labels, mode="P")
    img.putpalette(_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def load_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as HxW uint8 class ids (palette indices; a grey PNG is read as its values)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"label PNG must be a palette or greyscale image, got mode {img.mode}: {path}")
            arr = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"missing label file: {path}") from None
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"corrupt label file: {path} ({e})") from None
    if arr.ndim != 2:
        raise DataError(f"label file is not a single-channel image: {path}")
    return arr.astype(np.uint8, copy=False)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; a clear DataError names the file when it cannot be read."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"missing image file: {path}") from None
    except Exception as e:
        raise DataError(f"corrupt image file: {path} ({e})") from None
    return arr


def load_torch_file(path: str | os.PathLike, what: str):
    """``torch.load(path, weights_only=True)`` on CPU; a DataError says ``<what> not found`` / ``cannot read <what>``
    with the path when the file is missing or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"cannot read {what} {path}: {e}") from None
