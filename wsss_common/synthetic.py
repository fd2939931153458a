"""The embedded synthetic dataset, written in exactly the PASCAL VOC 2012 layout (see ``wsss_common.voc``).

It is built to carry the difficulties WSSS is about, so that seed/mask/val mIoU on it mean something:
- every class has a *body* (a shape filled with a two-colour texture) and a small, highly discriminative *part* (a
  saturated disc of the class's own colour at a fixed place on the object). With ``family_size`` 1 every class has
  its own body. With ``family_size`` n > 1, classes come in families of n that share one body (shape, texture,
  aspect; "fur is fur on a cat and on a dog"), so only the part tells the members of a family apart. The intent
  (paper §1, Fig. 1): a CAM fires on the part and misses the body that BAS's background suppression grows into;
  from random init it does not; from a backbone pretrained on another generated set (the workflow's
  ``pretraining``, an ImageNet stand-in) BAS leads the CAM on every training seed tried, and on 2 of 3 when every
  pretraining object wears a random body (bench/RESULTS.md, sessions 14-16). ``body_swap_prob`` q
  draws each object's body from a random class instead (with probability q): the body is then only weak evidence
  of the class (its own with probability 1 - q + q / K), spread over many pixels, while the part stays certain.
  ``part_radius`` is the part's radius in units of the object's radius;
- class/context co-occurrence: each class prefers one background texture (the boat-on-water effect), drawn with
  probability ``context_prob``. With ``context_halo_prob`` p > 0 an object is also, with probability p, surrounded
  by its class's context (an ellipse ``context_halo_scale`` times the object's radius, labelled background): local
  context as discriminative as it is frequent, which a CAM lights next to the object's own body;
- ``part_drop_prob`` p: with probability p an object has no part (a face turned away), so that the part's share of
  a class's evidence varies from image to image: a map that grades the part above the body then meets no single
  global threshold that fits both kinds of object;
- 1..max_objects objects per image, several classes per image, sizes from small to large, partial occlusion
  (later objects cover earlier ones) and cut-off at the border, varied image sizes and aspect ratios, JPEG
  compression;
- palette PNG masks with a 255 void band along every boundary, like VOC.

Class appearance depends only on the class index, the images only on (settings.seed, split, index): generation is
deterministic and can run in parallel. CLI:
    python -m wsss_common.synthetic --out DIR --settings JSON --class-names JSON [--workers N]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from scipy import ndimage

from .config import load_section
from .io import save_label_png


SHAPES = ["ellipse", "rectangle", "triangle", "star", "cross", "ring", "hexagon", "crescent", "diamond", "arrow"]
PATTERNS = ["stripes", "checker", "dots", "waves"]
CONTEXTS = ["water", "grass", "sky", "sand", "bricks", "carpet"]


@dataclass(frozen=True)
class ClassStyle:
    shape: str
    pattern: str
    colors: tuple                 # two RGB colours of the texture
    freq: float                   # texture frequency (cycles per object size)
    angle: float
    part_color: tuple             # colour of the discriminative part
    part_pos: tuple               # its position relative to the object's centre, in units of the object's radius
    aspect: float                 # object's width/height ratio
    context: int                  # preferred background


def class_style(k: int, family_size: int = 1) -> ClassStyle:
    """The fixed appearance of foreground class k (1-based); independent of the dataset seed.

    The body (shape, texture, aspect) is that of the class's family, (k - 1) // family_size + 1: with family_size 1
    each class is its own family (the set of sessions 1-5, unchanged). The part (colour, position) and the preferred
    context are the class's own."""
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    body = _own_style((k - 1) // family_size + 1)
    if family_size == 1:
        return body
    own = _own_style(k)
    # The part's hue: the family's members spread from 0.25 to 0.75 of the hue circle away from the body's hue, so
    # that siblings' parts differ and neither matches the body.
    family, member = (k - 1) // family_size + 1, (k - 1) % family_size
    part = _hsv((family * 0.381966 + 0.25 + 0.5 * member / (family_size - 1)) % 1.0, 1.0, 1.0)
    return with_body(replace(own, part_color=part), body)


def with_body(style: ClassStyle, body: ClassStyle) -> ClassStyle:
    """``style`` (its part and context) drawn on ``body``'s shape, texture and aspect. The part keeps its direction
    from the centre but moves inward until it lies on the body (a ring's hole or a triangle's narrow tip would
    swallow it; on a ring it goes onto the band)."""
    dy, dx = style.part_pos
    if body.shape == "ring":
        pos = (dy * 0.75 / max(np.hypot(dy, dx), 1e-6), dx * 0.75 / max(np.hypot(dy, dx), 1e-6))
    else:
        pos = next(((dy * f, dx * f) for f in (1.0, 0.75, 0.5, 0.25, 0.0)
                    if shape_mask(body.shape, np.array(dx * f), np.array(dy * f))), None)
    if pos is None:  # no point of that ray on the body (a crescent's centre is off it): the deepest point near it
        grid = np.linspace(-1, 1, 41)
        v, u = np.meshgrid(grid, grid, indexing="ij")
        depth = ndimage.distance_transform_edt(shape_mask(body.shape, u, v)) / 20.0
        i = np.unravel_index(np.argmax(depth - 0.1 * np.hypot(v - dy, u - dx)), depth.shape)
        pos = (float(v[i]), float(u[i]))
    return replace(style, shape=body.shape, pattern=body.pattern, colors=body.colors, freq=body.freq,
                   angle=body.angle, aspect=body.aspect, part_pos=(float(pos[0]), float(pos[1])))


def _own_style(k: int) -> ClassStyle:
    r = np.random.default_rng([7919, k])
    hue = ((k * 0.381966) % 1.0)
    c1 = _hsv(hue, 0.55 + 0.3 * r.random(), 0.55 + 0.35 * r.random())
    c2 = _hsv((hue + 0.08 + 0.1 * r.random()) % 1.0, 0.3 + 0.3 * r.random(), 0.25 + 0.3 * r.random())
    part = _hsv((hue + 0.5) % 1.0, 1.0, 1.0)
    ang = r.uniform(0, 2 * np.pi)
    return ClassStyle(
        shape=SHAPES[(k - 1) % len(SHAPES)],
        pattern=PATTERNS[(k - 1 + (k - 1) // len(SHAPES)) % len(PATTERNS)],
        colors=(c1, c2),
        freq=float(r.uniform(2.5, 5.0)),
        angle=float(r.uniform(0, np.pi)),
        part_color=part,
        part_pos=(0.45 * float(np.sin(ang)), 0.45 * float(np.cos(ang))),
        aspect=float(r.uniform(0.75, 1.35)),
        context=(k - 1) % len(CONTEXTS),
    )


def _hsv(h: float, s: float, v: float) -> tuple:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return tuple(float(x) for x in rgb)


# ----------------------------------------------------------------------------------------------------------------
# rendering


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-radius shape in object coordinates (u: right, v: down; |u|,|v| <= 1)."""
    rr = np.hypot(u, v)
    th = np.arctan2(v, u)
    if shape == "ellipse":
        return rr <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.7)
    if shape == "triangle":
        return (v <= 0.8) & (v >= -1.0 + 1.8 * np.abs(u) * 1.0) & (np.abs(u) <= 1.0)
    if shape == "star":
        return rr <= 0.55 + 0.45 * np.cos(5 * th) ** 2
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if shape == "ring":
        return (rr <= 1.0) & (rr >= 0.5)
    if shape == "hexagon":
        a = np.abs(u)
        b = np.abs(v)
        return (b <= 0.866) & (0.866 * a + 0.5 * b <= 0.866)
    if shape == "crescent":
        return (rr <= 1.0) & (np.hypot(u - 0.45, v) >= 0.75)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "arrow":
        head = (u >= 0.0) & (np.abs(v) <= 1.0 - u) & (u <= 1.0)
        shaft = (u < 0.0) & (u >= -1.0) & (np.abs(v) <= 0.35)
        return head | shaft
    raise ValueError(f"unknown shape {shape}")


def texture(style: ClassStyle, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HxWx3 float texture in object coordinates."""
    ca, sa = np.cos(style.angle), np.sin(style.angle)
    s = (u * ca + v * sa) * style.freq
    t = (-u * sa + v * ca) * style.freq
    if style.pattern == "stripes":
        w = (np.sin(2 * np.pi * s) > 0).astype(np.float32)
    elif style.pattern == "checker":
        w = ((np.floor(s) + np.floor(t)) % 2).astype(np.float32)
    elif style.pattern == "dots":
        w = (np.hypot(s - np.round(s), t - np.round(t)) < 0.3).astype(np.float32)
    else:  # waves
        w = 0.5 + 0.5 * np.sin(2 * np.pi * (s + 0.3 * np.sin(2 * np.pi * t)))
    c1, c2 = (np.asarray(c, np.float32) for c in style.colors)
    return w[..., None] * c1 + (1 - w[..., None]) * c2


def background(kind: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 2.0)
    name = CONTEXTS[kind]
    ph = rng.uniform(0, 2 * np.pi)
    if name == "water":
        g = 0.5 + 0.5 * np.sin(yy / 3.0 + 0.8 * np.sin(xx / 9.0 + ph))
        base = np.stack([0.1 + 0.1 * g, 0.3 + 0.15 * g, 0.55 + 0.25 * g], -1)
    elif name == "grass":
        base = np.stack([0.2 + 0.1 * noise, 0.5 + 0.15 * noise, 0.15 + 0.05 * noise], -1)
    elif name == "sky":
        g = yy / max(h - 1, 1)
        base = np.stack([0.55 + 0.3 * g, 0.7 + 0.2 * g, 0.95 - 0.05 * g], -1) + 0.02 * noise[..., None]
    elif name == "sand":
        base = np.stack([0.8 + 0.08 * noise, 0.7 + 0.08 * noise, 0.5 + 0.06 * noise], -1)
    elif name == "bricks":
        row = np.floor(yy / 8)
        mortar = ((yy % 8) < 1.2) | (((xx + 8 * (row % 2)) % 16) < 1.2)
        g = np.where(mortar, 0.8, 0.45 + 0.05 * noise)
        base = np.stack([g + 0.1, g * 0.6, g * 0.5], -1)
    else:  # carpet
        g = 0.5 + 0.5 * np.sin(xx / 2.5 + ph) * np.sin(yy / 2.5)
        base = np.stack([0.45 + 0.15 * g, 0.2 + 0.1 * g, 0.35 + 0.15 * g], -1)
    return base.astype(np.float32)


def render_image(settings: dict, num_fg: int, rng: np.random.Generator):
    """One image: (HxWx3 uint8 RGB, HxW uint8 label map with void band, list of (class, bbox) of visible objects)."""
    h = int(rng.integers(settings["min_side"], settings["max_side"] + 1))
    w = int(rng.integers(settings["min_side"], settings["max_side"] + 1))
    n_obj = int(rng.integers(1, settings["max_objects"] + 1))
    classes = [int(c) for c in rng.integers(1, num_fg + 1, size=n_obj)]
    family = int(settings.get("family_size", 1))
    ctx = class_style(classes[0], family).context if rng.random() < settings["context_prob"] else int(
        rng.integers(len(CONTEXTS)))
    img = background(ctx, h, w, rng)
    label = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = min(h, w)
    swap = float(settings.get("body_swap_prob", 0.0))
    for k in classes:
        st = class_style(k, family)
        if swap > 0 and rng.random() < swap:  # (no draw at 0: the set of sessions 1-5 stays byte-identical)
            st = with_body(st, class_style(int(rng.integers(1, num_fg + 1)), family))
        radius = side * float(rng.uniform(0.1, 0.42))
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        rot = float(rng.uniform(-0.5, 0.5))
        ry, rx = radius / np.sqrt(st.aspect), radius * np.sqrt(st.aspect)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(rot) + dy * np.sin(rot)) / rx
        v = (-dx * np.sin(rot) + dy * np.cos(rot)) / ry
        m = shape_mask(st.shape, u, v)
        if m.sum() < 4:
            continue
        halo = float(settings.get("context_halo_prob", 0.0))
        if halo > 0 and rng.random() < halo:  # (no draw at 0: the sets without halos stay byte-identical)
            # the class's own context around the object (water around a boat, a road under a car): background
            # pixels that co-occur with the class, lit by a CAM as much as they predict it
            ring = (np.hypot(u, v) <= float(settings.get("context_halo_scale", 1.6))) & ~m
            img[ring] = background(st.context, h, w, rng)[ring]
            label[ring] = 0
        shade = 0.85 + 0.15 * np.clip(1 - 0.5 * (u + v), 0, 2)[..., None] / 2
        img[m] = (texture(st, u, v) * shade)[m]
        drop = float(settings.get("part_drop_prob", 0.0))
        if not (drop > 0 and rng.random() < drop):  # (no draw at 0: the sets without dropped parts stay identical)
            part = (np.hypot(u - st.part_pos[1], v - st.part_pos[0]) <= settings.get("part_radius", 0.2)) & m
            img[part] = np.asarray(st.part_color, np.float32)
        label[m] = k
    img = np.clip(img + 0.03 * rng.standard_normal(img.shape).astype(np.float32), 0, 1)
    img8 = (img * 255 + 0.5).astype(np.uint8)
    q = int(rng.integers(settings["jpeg_quality"][0], settings["jpeg_quality"][1] + 1))
    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, format="JPEG", quality=q)
    vw = int(settings["void_width"])
    if vw > 0:
        size = 2 * vw + 1
        band = ndimage.maximum_filter(label, size) != ndimage.minimum_filter(label, size)
        label = np.where(band, 255, label).astype(np.uint8)
    # Objects as the mask shows them (a sliver swallowed by the void band is not an object): labels from the
    # masks and from the Annotations XML then agree.
    objects = []
    for k in sorted(set(np.unique(label).tolist()) - {0, 255}):
        ys, xs = np.nonzero(label == k)
        objects.append((k, (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)))
    return buf.getvalue(), label, objects, (h, w)


def annotation_xml(image_id: str, size: tuple, objects: list, class_names: list[str]) -> str:
    h, w = size
    objs = "".join(
        f"<object><name>{escape(class_names[k])}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for k, b in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>1</segmented>{objs}</annotation>\n")


# ----------------------------------------------------------------------------------------------------------------
# writing the dataset

SPLIT_CODES = {"train_aug": 0, "val": 1}


def image_id(split: str, index: int) -> str:
    return f"{2026 + SPLIT_CODES[split]}_{index:06d}"


def _write_one(job):
    out, settings, class_names, split, index, seg_class = job
    rng = np.random.default_rng([int(settings["seed"]), SPLIT_CODES[split], index])
    while True:  # every image has at least one visible object (draws continue from the same generator: deterministic)
        jpeg, label, objects, size = render_image(settings, len(class_names) - 1, rng)
        if objects:
            break
    iid = image_id(split, index)
    (out / "JPEGImages" / f"{iid}.jpg").write_bytes(jpeg)
    save_label_png(out / "SegmentationClassAug" / f"{iid}.png", label)
    if seg_class:
        save_label_png(out / "SegmentationClass" / f"{iid}.png", label)
    (out / "Annotations" / f"{iid}.xml").write_text(annotation_xml(iid, size, objects, class_names))
    return iid


def check_settings(settings: dict, class_names: list[str]) -> dict:
    s = load_section("data.synthetic", settings)  # the schema's defaults and checks (workflow/schemas)
    if len(class_names) < 2:
        raise ValueError("data.class_names needs background plus at least one foreground class")
    if not 0 < s["n_train_seg"] <= s["n_train"]:
        raise ValueError("data.synthetic.n_train_seg must be in 1..n_train")
    if s["n_val"] < 1 or s["min_side"] < 16 or s["max_side"] < s["min_side"]:
        raise ValueError("data.synthetic: need n_val >= 1 and 16 <= min_side <= max_side")
    return s


def generate(out: str | Path, settings: dict, class_names: list[str], workers: int = 1, progress: bool = True) -> Path:
    """Write the dataset to ``out`` (a VOC2012 folder). Built in a temporary sibling folder, renamed at the end."""
    s = check_settings(settings, class_names)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (tmp / sub).mkdir(parents=True)
    jobs = [(tmp, s, class_names, "train_aug", i, i < s["n_train_seg"]) for i in range(s["n_train"])]
    jobs += [(tmp, s, class_names, "val", i, True) for i in range(s["n_val"])]
    t0 = time.time()
    try:
        if workers > 1:
            with Pool(workers) as pool:
                ids = []
                for n, iid in enumerate(pool.imap(_write_one, jobs, chunksize=16)):
                    ids.append(iid)
                    if progress and (n + 1) % 200 == 0:
                        print(f"{n + 1}/{len(jobs)} images", file=sys.stderr, flush=True)
        else:
            ids = [_write_one(j) for j in jobs]
        train_aug = ids[: s["n_train"]]
        val = ids[s["n_train"]:]
        sets = tmp / "ImageSets" / "Segmentation"
        (sets / "train_aug.txt").write_text("\n".join(train_aug) + "\n")
        (sets / "train.txt").write_text("\n".join(train_aug[: s["n_train_seg"]]) + "\n")
        (sets / "val.txt").write_text("\n".join(val) + "\n")
        (tmp / "synthetic.json").write_text(json.dumps({"settings": s, "class_names": class_names}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if progress:
        print(f"wrote {len(jobs)} images to {out} in {time.time() - t0:.1f}s", file=sys.stderr)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the VOC2012 folder to write")
    p.add_argument("--settings", default="{}", help="JSON object: data.synthetic")
    p.add_argument("--class-names", required=True, help="JSON list: data.class_names (background first)")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    generate(a.out, json.loads(a.settings), json.loads(a.class_names), workers=a.workers)


if __name__ == "__main__":
    main()
