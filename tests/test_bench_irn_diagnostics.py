"""The pure pieces of bench/bench_irn_diagnostics.py: rank AUC, edge max-pool, IR-label confusion."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_irn_diagnostics.py"
_spec = importlib.util.spec_from_file_location("bench_irn_diagnostics", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_rank_auc_hand_examples():
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    assert bench.rank_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert bench.rank_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert bench.rank_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert bench.rank_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(0.0)
    # a tie between a positive and a negative counts 1/2: pairs (0.4 vs 0.2, 0.4 vs 0.4) -> (1 + 0.5) / 2
    assert bench.rank_auc([0.2, 0.4, 0.4], [0, 0, 1]) == pytest.approx(0.75)
    # boolean labels and 2-D arrays are accepted
    assert bench.rank_auc(np.array([[0.1, 0.9]]), np.array([[False, True]])) == pytest.approx(1.0)


def test_rank_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        bench.rank_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="both classes"):
        bench.rank_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="differ in length"):
        bench.rank_auc([0.1, 0.2, 0.3], [0, 1])


def test_edge_grid_pads_and_max_pools():
    edge = np.zeros((5, 9), bool)  # grid (5-1)//4+1 = 2 rows, (9-1)//4+1 = 3 columns
    edge[0, 0] = True   # cell (0, 0)
    edge[4, 8] = True   # the last pixel: cell (1, 2), only reached through the zero padding
    edge[2, 5] = True   # cell (0, 1)
    grid = bench.edge_grid(edge, (2, 3))
    assert grid.dtype == bool
    np.testing.assert_array_equal(grid, [[True, True, False], [False, False, True]])
    assert not bench.edge_grid(np.zeros((4, 4), bool), (1, 1)).any()
    with pytest.raises(ValueError, match="larger"):
        bench.edge_grid(np.zeros((9, 4), bool), (2, 1))


def test_cell_fraction_counts_pixels_beyond_the_image_as_false():
    mask = np.zeros((5, 8), bool)
    mask[:4, :4] = True  # the first cell wholly True
    mask[4, 4:] = True  # a row in the image's last line: the second row of cells sticks out of the 5-pixel image
    frac = bench.cell_fraction(mask, (2, 2))
    assert frac.tolist() == [[1.0, 0.0], [0.0, 0.25]]
    with pytest.raises(ValueError, match="larger"):
        bench.cell_fraction(np.zeros((9, 4), bool), (2, 1))


def test_ir_label_confusion_unsure_as_background_or_left_out():
    gt = np.array([[0, 1, 1, 255],
                   [0, 2, 2, 1]], np.uint8)
    label = np.array([[255, 1, 255, 1],
                      [0, 2, 255, 255]], np.uint8)
    conf = bench.ir_label_confusion(gt, label, 3)
    # GT void (255) is skipped; label 255 counts as background (column 0)
    expected = np.zeros((3, 3), np.int64)
    expected[0, 0] = 2  # gt 0 / label 255, gt 0 / label 0
    expected[1, 1] = 1
    expected[1, 0] = 2  # gt 1 / label 255 (twice)
    expected[2, 2] = 1
    expected[2, 0] = 1  # gt 2 / label 255
    np.testing.assert_array_equal(conf, expected)
    confident = bench.ir_label_confusion(gt, label, 3, unsure="ignore")
    np.testing.assert_array_equal(confident, np.diag([1, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        bench.ir_label_confusion(gt, label[:, :3], 3)
    with pytest.raises(ValueError, match="unsure"):
        bench.ir_label_confusion(gt, label, 3, unsure="drop")
