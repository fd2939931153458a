import numpy as np
import pytest
from PIL import Image

from wsss_common.io import (DataError, atomic_path, load_label_png, load_npz, load_rgb, save_label_png,
                            save_npz_atomic, voc_palette)


def test_palette_matches_voc_colours():
    pal = voc_palette()
    assert pal[0:3] == [0, 0, 0] and pal[3:6] == [128, 0, 0] and pal[6:9] == [0, 128, 0]
    assert pal[255 * 3: 256 * 3] == [224, 224, 192]  # the void colour


def test_label_png_round_trip_is_palette(tmp_path):
    lab = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    save_label_png(tmp_path / "a.png", lab)
    assert Image.open(tmp_path / "a.png").mode == "P"
    np.testing.assert_array_equal(load_label_png(tmp_path / "a.png"), lab)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_npz_has_no_pickles(tmp_path):
    save_npz_atomic(tmp_path / "s.npz", a=np.arange(3), format="x/1")
    d = load_npz(tmp_path / "s.npz")
    assert d["format"] == "x/1" and d["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="pickled"):
        save_npz_atomic(tmp_path / "bad.npz", obj=np.array([{}], dtype=object))
    assert not (tmp_path / "bad.npz").exists()


def test_corrupt_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "2007_000032.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="2007_000032.jpg"):
        load_rgb(bad)
    with pytest.raises(DataError, match="missing image file: .*nope.jpg"):
        load_rgb(tmp_path / "nope.jpg")
    (tmp_path / "m.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="m.png"):
        load_label_png(tmp_path / "m.png")
    (tmp_path / "s.npz").write_bytes(b"zip?")
    with pytest.raises(DataError, match="s.npz"):
        load_npz(tmp_path / "s.npz")


def test_torch_file_errors_name_what_and_where(tmp_path):
    from wsss_common.io import load_torch_file

    with pytest.raises(DataError, match="trained model not found: .*model.pth"):
        load_torch_file(tmp_path / "model.pth", "trained model")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read initial weights .*bad.pth"):
        load_torch_file(tmp_path / "bad.pth", "initial weights")
