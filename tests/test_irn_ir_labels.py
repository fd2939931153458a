"""IR labels: thresholded seed labels, the two-pass combination rule (255 / 0 / class), the dense CRF on a
synthetic image, and seed-file validation."""
import numpy as np
import pytest

from irn.ir_labels import combine_passes, crf_inference_label, ir_label_from_seed, load_seed, threshold_labels
from wsss_common.config import load_section
from wsss_common.io import DataError, save_npz_atomic

CRF = load_section("irn", {})["crf"]  # the schema's defaults (IRN's crf_inference_label parameters)


def test_crf_defaults_are_irns():
    # IRN imutils.crf_inference_label: unary_from_labels(gt_prob=0.7), Gaussian sxy 3 / compat 3, bilateral sxy 50 /
    # srgb 5 / compat 10, 10 iterations; the schema is their only source now
    assert CRF == {"iterations": 10, "gt_prob": 0.7, "gaussian_sxy": 3, "gaussian_compat": 3, "bilateral_sxy": 50,
                   "bilateral_srgb": 5, "bilateral_compat": 10}


def test_threshold_labels_prepends_background_plane():
    maps = np.array([[[0.1, 0.5, 0.9]], [[0.2, 0.6, 0.3]]], np.float32)  # K=2, 1x3
    np.testing.assert_array_equal(threshold_labels(maps, 0.3), [[0, 2, 1]])
    np.testing.assert_array_equal(threshold_labels(maps, 0.05), [[2, 2, 1]])


def test_combine_passes_rule():
    keys = np.array([4, 7])
    fg_pass = np.array([[0, 0, 1, 2], [0, 2, 0, 1]])
    bg_pass = np.array([[0, 1, 1, 2], [2, 2, 0, 0]])
    expected = np.array([[0, 255, 4, 7], [255, 7, 0, 4]], np.uint8)
    out = combine_passes(fg_pass, bg_pass, keys)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def stripes_image_and_seed():
    """40x60 image of three vertical stripes (dark / grey / bright) and a one-class seed that is high on the bright
    stripe (0.9), medium on the grey one (0.2) and low on the dark one (0.01)."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 20:40] = 128
    image[:, 40:] = 255
    seed = np.full((1, 40, 60), 0.01, np.float32)
    seed[:, :, 20:40] = 0.2
    seed[:, :, 40:] = 0.9
    return image, seed


def test_crf_keeps_labels_aligned_with_image_edges():
    image, seed = stripes_image_and_seed()
    labels = threshold_labels(seed, 0.17)
    out = crf_inference_label(image, labels, 2, **CRF)
    np.testing.assert_array_equal(out, labels)


def test_crf_snaps_a_shifted_label_to_the_colour_edge():
    image, _ = stripes_image_and_seed()
    labels = np.zeros((40, 60), np.int64)
    labels[:, 37:] = 1  # class region starts 3 px before the grey/bright edge at x=40... and covers grey
    labels[:, 20:37] = 0
    out = crf_inference_label(image, labels, 2, **CRF)
    assert out[:, 42:].min() == 1 and out[:, :20].max() == 0
    assert (out[:, 37:40] == 0).mean() > 0.9  # the grey pixels wrongly labelled 1 go back with their stripe


def test_ir_label_from_seed_bas_thresholds():
    image, seed = stripes_image_and_seed()
    out = ir_label_from_seed(image, seed, np.array([3]), fg_threshold=0.30, bg_threshold=0.17, crf=CRF)
    expected = np.zeros((40, 60), np.uint8)
    expected[:, 20:40] = 255  # background only in the fg pass: unsure
    expected[:, 40:] = 3      # foreground in the fg pass: the class id
    np.testing.assert_array_equal(out, expected)
    # IRN's background threshold 0.05 leaves the dark stripe (0.01) confident background too
    out_irn = ir_label_from_seed(image, seed, np.array([3]), fg_threshold=0.30, bg_threshold=0.05, crf=CRF)
    np.testing.assert_array_equal(out_irn, expected)
    # ... and a bg threshold below every seed value makes nothing confident background
    out_low = ir_label_from_seed(image, seed, np.array([3]), fg_threshold=0.30, bg_threshold=0.005, crf=CRF)
    assert set(np.unique(out_low)) == {3, 255}


def test_ir_label_without_keys_is_background():
    image, _ = stripes_image_and_seed()
    out = ir_label_from_seed(image, np.zeros((0, 40, 60), np.float32), np.zeros(0, np.int64),
                             fg_threshold=0.3, bg_threshold=0.17, crf=CRF)
    assert out.shape == (40, 60) and out.max() == 0


def write_seed(path, keys, height, width, cam_shape=None, fmt="wsss-seed/1"):
    k = len(keys)
    cam_shape = cam_shape or (k, -(-height // 4), -(-width // 4))
    save_npz_atomic(path, format=np.array(fmt), keys=np.asarray(keys, np.int64),
                    cam=np.full(cam_shape, 0.5, np.float32), high_res=np.full((k, height, width), 0.5, np.float32),
                    threshold=np.float32(np.nan), image_size=np.array([height, width], np.int64))


def test_load_seed_accepts_a_valid_file(tmp_path):
    write_seed(tmp_path / "a.npz", [2, 5], 9, 10)
    seed = load_seed(tmp_path / "a.npz")
    assert seed["cam"].shape == (2, 3, 3) and seed["keys"].tolist() == [2, 5]


@pytest.mark.parametrize("kwargs, message", [
    ({"cam_shape": (2, 2, 3)}, "cam has shape"),
    ({"fmt": "other/1"}, "format"),
    ({"keys": [5, 2]}, "keys must be ascending"),
])
def test_load_seed_rejects_malformed_files(tmp_path, kwargs, message):
    args = {"keys": [2, 5], "height": 9, "width": 10, **kwargs}
    write_seed(tmp_path / "bad.npz", **args)
    with pytest.raises(DataError, match=message) as err:
        load_seed(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_both_passes_on_one_lattice_give_the_labels_of_two_separate_crfs():
    # ir_label_from_seed builds the bilateral lattice once per image; a reused DenseCRF must restart from the new
    # unary, or the bg pass would inherit the fg pass's result
    rng = np.random.default_rng(3)
    image = (rng.random((40, 48, 3)) * 60).astype(np.uint8)
    image[8:30, 10:36] += 150
    maps = np.zeros((2, 40, 48), np.float32)
    maps[0, 6:32, 8:38] = np.linspace(0.2, 1.0, 30)[None, :]
    maps[1, 28:40, 0:20] = 0.5
    keys = np.array([3, 7])
    pairwise = {k: CRF[k] for k in ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb",
                                    "bilateral_compat")}
    fg = crf_inference_label(image, threshold_labels(maps, 0.6), 3, **CRF)
    bg = crf_inference_label(image, threshold_labels(maps, 0.25), 3, **CRF)
    assert not np.array_equal(fg, bg)  # the two passes differ, so a leaked state would show
    expected = combine_passes(fg, bg, keys)
    out = ir_label_from_seed(image, maps, keys, fg_threshold=0.6, bg_threshold=0.25, crf=CRF)
    np.testing.assert_array_equal(out, expected)
    assert set(np.unique(out)) >= {0, 3, 255}
    from irn.ir_labels import dense_crf
    shared = dense_crf(image, 3, **pairwise)
    first = crf_inference_label(image, threshold_labels(maps, 0.6), 3, iterations=CRF["iterations"],
                                gt_prob=CRF["gt_prob"], crf=shared)
    again = crf_inference_label(image, threshold_labels(maps, 0.25), 3, iterations=CRF["iterations"],
                                gt_prob=CRF["gt_prob"], crf=shared)
    np.testing.assert_array_equal(first, fg)
    np.testing.assert_array_equal(again, bg)
