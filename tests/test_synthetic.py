import hashlib

import numpy as np
from scipy import ndimage
import pytest

from wsss_common.synthetic import check_settings, class_style, generate, shape_mask
from wsss_common.voc import image_labels, labels_from_mask, load_image, load_mask, read_split_ids

from conftest import TINY_CLASSES, TINY_SETTINGS


def _digest(root):
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_independent_of_workers(tmp_path, tiny_voc):
    again = generate(tmp_path / "a" / "VOC2012", TINY_SETTINGS, TINY_CLASSES, workers=2, progress=False)
    assert _digest(again) == _digest(tiny_voc["root"])
    other = generate(tmp_path / "b" / "VOC2012", {**TINY_SETTINGS, "seed": 4}, TINY_CLASSES, progress=False)
    assert _digest(other) != _digest(tiny_voc["root"])


def test_voc_layout_and_splits(tiny_voc):
    root = tiny_voc["root"]
    train_aug, train, val = (read_split_ids(root, s) for s in ("train_aug", "train", "val"))
    assert len(train_aug) == 16 and train == train_aug[:8] and len(val) == 6
    assert all("_" in i for i in train_aug + val)
    assert all((root / "SegmentationClass" / f"{i}.png").is_file() for i in train + val)
    assert not (root / "SegmentationClass" / f"{train_aug[-1]}.png").exists()
    assert all((root / "SegmentationClassAug" / f"{i}.png").is_file() for i in train_aug)


def test_labels_masks_and_annotations_agree(tiny_voc):
    root, names = tiny_voc["root"], tiny_voc["class_names"]
    sizes = set()
    for i in read_split_ids(root, "train_aug") + read_split_ids(root, "val"):
        img, mask = load_image(root, i), load_mask(root, i)
        assert img.shape[:2] == mask.shape
        sizes.add(mask.shape)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(len(names))) | {255}
        assert 255 in values                   # void band along the boundaries
        labels, source = image_labels(root, i, names)
        assert 1 <= len(labels) <= 3 and source == "annotations"
        assert labels == labels_from_mask(mask, len(names))   # the XML names exactly the classes of the mask
    assert len(sizes) > 10                     # varied sizes and aspect ratios


def test_classes_have_fixed_distinct_appearance():
    styles = [class_style(k) for k in range(1, 11)]
    assert len({s.shape for s in styles}) == 10
    assert class_style(3) == class_style(3)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="n_train_seg"):
        check_settings({"n_train": 5, "n_train_seg": 6}, TINY_CLASSES)
    with pytest.raises(ValueError, match="config key data.synthetic: .*'n_trian' was unexpected"):
        check_settings({"n_trian": 5}, TINY_CLASSES)
    assert check_settings({"n_train": 5, "n_train_seg": 2}, TINY_CLASSES)["max_side"] == 160  # schema default


def test_family_size_one_keeps_every_class_its_own_body():
    # the set of sessions 1-5: class k has the k-th shape and its own texture
    assert [class_style(k, 1).shape for k in (1, 2, 3)] == ["ellipse", "rectangle", "triangle"]
    assert class_style(2, 1).colors != class_style(1, 1).colors


@pytest.mark.parametrize("family_size", [2, 3])
def test_families_share_a_body_and_differ_only_in_the_part(family_size):
    styles = {k: class_style(k, family_size) for k in range(1, 13)}
    for k, st in styles.items():
        head = (k - 1) // family_size * family_size + 1
        first = styles[head]   # the family's first member
        body = (st.shape, st.pattern, st.colors, st.freq, st.angle, st.aspect)
        assert body == (first.shape, first.pattern, first.colors, first.freq, first.angle, first.aspect)
        if k != head:
            assert st.part_color != first.part_color and st.part_pos != first.part_pos
        # the part sits on the body (a ring's hole or a triangle's tip would swallow it)
        assert shape_mask(st.shape, np.array(st.part_pos[1]), np.array(st.part_pos[0]))
    families = {(st.shape, st.colors) for st in styles.values()}
    assert len(families) == 12 // family_size
    with pytest.raises(ValueError, match="family_size"):
        class_style(1, 0)


def test_rendered_siblings_share_body_colour_and_carry_their_own_part(tmp_path):
    names = ["background", "a1", "a2", "b1", "b2"]
    settings = {"seed": 5, "n_train": 40, "n_train_seg": 4, "n_val": 1, "min_side": 64, "max_side": 80,
                "max_objects": 2, "family_size": 2, "part_radius": 0.3, "jpeg_quality": [95, 95]}
    root = generate(tmp_path / "VOC2012", settings, names, progress=False)
    pixels = {k: [] for k in range(1, 5)}
    for i in read_split_ids(root, "train_aug"):
        img, mask = load_image(root, i).astype(np.float32) / 255, load_mask(root, i)
        for k in pixels:
            pixels[k].append(img[mask == k])
    pixels = {k: np.concatenate(v) for k, v in pixels.items()}
    assert all(len(v) > 500 for v in pixels.values())

    def near_part(k, part_class):  # class k's pixels close to part_class's part colour
        colour = np.asarray(class_style(part_class, 2).part_color, np.float32)
        return np.abs(pixels[k] - colour).max(axis=1) < 0.12

    for k, sibling in ((1, 2), (2, 1), (3, 4), (4, 3)):
        assert near_part(k, k).mean() > 0.03          # the class's own part is drawn on it ...
        assert near_part(k, sibling).mean() < 0.005   # ... and never its sibling's
    body = {k: pixels[k][np.abs(pixels[k] - np.asarray(class_style(k, 2).part_color)).max(axis=1) > 0.3].mean(0)
            for k in pixels}
    same = max(np.abs(body[1] - body[2]).max(), np.abs(body[3] - body[4]).max())
    other = np.abs(body[1] - body[3]).max()
    assert same < 0.06 and other > 0.2            # siblings look alike apart from the part; families do not


def test_family_settings_are_checked():
    assert check_settings({}, TINY_CLASSES)["family_size"] == 1
    with pytest.raises(ValueError, match="family_size"):
        check_settings({"family_size": 0}, TINY_CLASSES)
    with pytest.raises(ValueError, match="part_radius"):
        check_settings({"part_radius": 0}, TINY_CLASSES)


def test_with_body_keeps_the_class_part_on_another_class_body():
    from wsss_common.synthetic import SHAPES, with_body

    own = class_style(1)
    for j in range(1, len(SHAPES) + 1):
        body = class_style(j)
        st = with_body(own, body)
        assert (st.shape, st.pattern, st.colors, st.aspect) == (body.shape, body.pattern, body.colors, body.aspect)
        assert (st.part_color, st.context) == (own.part_color, own.context)
        assert shape_mask(st.shape, np.array(st.part_pos[1]), np.array(st.part_pos[0]))   # on the body


def test_body_swap_changes_bodies_but_never_parts(tmp_path):
    settings = {"seed": 2, "n_train": 12, "n_train_seg": 2, "n_val": 1, "min_side": 48, "max_side": 64,
                "max_objects": 2, "part_radius": 0.3, "jpeg_quality": [95, 95]}
    plain = generate(tmp_path / "p" / "VOC2012", settings, TINY_CLASSES, progress=False)
    swapped = generate(tmp_path / "s" / "VOC2012", {**settings, "body_swap_prob": 1.0}, TINY_CLASSES, progress=False)
    objects = with_part = differ = 0
    for i in read_split_ids(plain, "train_aug"):
        a, b = load_mask(plain, i), load_mask(swapped, i)
        differ += int(not np.array_equal(a, b))    # other shapes under the same classes
        img = load_image(swapped, i).astype(np.float32) / 255
        for k in set(np.unique(b).tolist()) - {0, 255}:
            near = {j: (np.abs(img[b == k] - np.asarray(class_style(j).part_color)).max(axis=1) < 0.12).any()
                    for j in range(1, len(TINY_CLASSES))}
            assert not any(near[j] for j in near if j != k), f"{i}: another class's part on class {k}"
            if (b == k).sum() >= 100:              # a visible object (a later one may hide a small one's part)
                objects, with_part = objects + 1, with_part + int(near[k])
    assert objects > 5 and with_part >= 0.8 * objects and differ >= 6


def _one_object_pairs(tmp_path, seed, n, changed_settings, **settings):
    """Two sets of one object per image, the second with ``changed_settings``: per image (mask, image of the first,
    image of the second, the object's class), after checking that the two masks are equal."""
    settings = {"seed": seed, "n_train": n, "n_train_seg": 2, "n_val": 1, "min_side": 64, "max_side": 80,
                "max_objects": 1, "context_prob": 0.0, "jpeg_quality": [95, 95], **settings}
    plain = generate(tmp_path / "p" / "VOC2012", settings, TINY_CLASSES, progress=False)
    other = generate(tmp_path / "o" / "VOC2012", {**settings, **changed_settings}, TINY_CLASSES, progress=False)
    for i in read_split_ids(plain, "train_aug"):
        mask = load_mask(plain, i)
        assert np.array_equal(mask, load_mask(other, i))
        a, b = (load_image(r, i).astype(np.float32) / 255 for r in (plain, other))
        yield mask, a, b, int(max(set(np.unique(mask).tolist()) - {0, 255}))


def test_context_halo_surrounds_an_object_with_its_own_class_context_labelled_background(tmp_path):
    """One object per image: the halo draws come after the object's geometry, so the masks of the sets with and
    without halos are equal, and every pixel the halo repaints is background, near its object, in the colours of
    the object's class's context (not another class's)."""
    from wsss_common.synthetic import CONTEXTS, background

    means = np.stack([background(c, 64, 64, np.random.default_rng(0)).reshape(-1, 3).mean(0)
                      for c in range(len(CONTEXTS))])
    checked = 0
    for mask, a, b, k in _one_object_pairs(tmp_path, 4, 12, {"context_halo_prob": 1.0}):
        repainted = (np.abs(a - b).max(axis=2) > 0.2) & (mask == 0)
        assert not ((np.abs(a - b).max(axis=2) > 0.2) & (mask == k)).any()   # the object itself is untouched
        if repainted.sum() < 50:   # the background already looked like the halo's context
            continue
        near = ndimage.binary_dilation(mask != 0, iterations=40)
        assert (repainted & ~near).sum() <= 0.02 * repainted.sum()            # around the object only
        colour = b[repainted].mean(0)
        assert np.argmin(np.abs(means - colour).sum(axis=1)) == class_style(k).context
        checked += 1
    assert checked >= 6
    with pytest.raises(ValueError, match="context_halo_prob"):
        check_settings({"context_halo_prob": 1.5}, TINY_CLASSES)


def test_a_dropped_part_leaves_the_body_and_the_mask_as_they_were(tmp_path):
    """One object per image, part_drop_prob 1: the masks equal those of the set with parts, and the pixels that
    change are the part's disc, inside the object, where the set with parts shows the class's part colour."""
    checked = 0
    for mask, a, b, k in _one_object_pairs(tmp_path, 5, 10, {"part_drop_prob": 1.0}, part_radius=0.3):
        changed = np.abs(a - b).max(axis=2) > 0.3
        assert changed.sum() > 0                                            # every object lost its part
        assert (changed & (mask != k) & (mask != 255)).sum() <= 0.02 * changed.sum()   # inside the object only
        part = np.asarray(class_style(k).part_color, np.float32)
        # where the plain set shows the part colour (JPEG's chroma subsampling blurs the saturated disc) and the
        # dropped one shows something far from it
        near_plain = np.abs(np.median(a[changed], axis=0) - part).max()
        near_dropped = np.abs(np.median(b[changed], axis=0) - part).max()
        assert near_plain < 0.25 and near_dropped > near_plain + 0.2, (near_plain, near_dropped)
        checked += 1
    assert checked == 10
    with pytest.raises(ValueError, match="part_drop_prob"):
        check_settings({"part_drop_prob": -0.1}, TINY_CLASSES)
