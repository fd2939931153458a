"""bench/bench_search_pruning.py: its counts on hand-made score curves, and its multiply-accumulate counter."""
import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location("bench_search_pruning",
                                              Path(__file__).resolve().parents[1] / "bench" / "bench_search_pruning.py")
pruning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pruning)


def test_bound_stops_once_the_smallest_remaining_bound_exceeds_the_best_score():
    # bounds (mean L_ac) fall with the threshold; scores = bound + L_bas
    bound = np.array([0.9, 0.6, 0.3, 0.1])
    scores = np.array([0.95, 0.7, 0.5, 1.0])
    # visit 0.1 (best 1.0), 0.3 (best 0.5), then 0.6 > 0.5: stop -> 2 evaluated
    assert pruning.evaluations_with_bound(scores, bound) == 2
    # a best score above every bound prunes nothing
    assert pruning.evaluations_with_bound(np.array([2.0, 2.0, 2.0, 2.0]), bound) == 4


def test_unimodal_allows_flat_steps_but_not_a_second_valley():
    assert pruning.unimodal(np.array([0.9, 0.8, 0.8, 0.85, 1.0]))
    assert pruning.unimodal(np.array([0.5, 0.6, 0.7]))
    assert not pruning.unimodal(np.array([0.9, 0.7, 0.8, 0.6, 0.9]))


def test_multiply_accumulates_counts_a_convolution_by_hand():
    import torch

    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    # 3 output channels x 4 x 5 positions x (2 input channels x 3 x 3 taps)
    assert pruning.multiply_accumulates(lambda: conv(torch.zeros(1, 2, 4, 5))) == 3 * 4 * 5 * 2 * 9
