"""How much of the image-specific threshold search an exact shortcut could skip, on a finished demo run.

    PYTHONPATH=. python bench/bench_search_pruning.py --results results/demo [--images 150]

For the first --images eval-split seeds of a run, the L_bas and L_ac of every (threshold, class) of the
seeds.threshold_search grid, with the run's BAS model (bas_seed.threshold, as the export computes them). Then:
- bound pruning: L_bas is in [0, 1], so a threshold whose mean L_ac alone exceeds the best score found so far cannot
  win. Visiting thresholds by ascending mean L_ac (the bound), count how many must be evaluated before the bound
  stops the search; exact, it needs no F2 pass for the skipped ones;
- how many score curves are unimodal over the grid (what a coarse-to-fine or golden-section search would assume);
- the FLOP floor: multiply-accumulates (convolutions and matmuls, torch.utils.flop_counter) of the image's export
  (``seed_maps`` with the run's scales and flip) and of one F2 pass on its layer3 features. Any exact formulation
  runs F2 once per (threshold, class) on its own erased features (plus once unerased), so
  1 + (T * K + 1) * F2 / export bounds (export + search) / export from below, whatever the batching.
Prints one line per statistic.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bas_seed.data import normalize  # noqa: E402
from bas_seed.export import load_seed, search_grid, seed_maps  # noqa: E402
from bas_seed.model import load_model  # noqa: E402
from bas_seed.threshold import amc_losses, class_masks, threshold_scores  # noqa: E402
from wsss_common.config import load_section  # noqa: E402
from wsss_common.shards import load_index  # noqa: E402
from wsss_common.voc import load_image, load_label_cache  # noqa: E402


def evaluations_with_bound(scores: np.ndarray, bound: np.ndarray) -> int:
    """Thresholds evaluated when visiting them by ascending bound and stopping once the bound exceeds the best."""
    best, n = np.inf, 0
    for j in np.argsort(bound, kind="stable"):
        if bound[j] > best:
            break
        n += 1
        best = min(best, scores[j])
    return n


def unimodal(scores: np.ndarray) -> bool:
    steps = np.sign(np.diff(scores))
    steps = steps[steps != 0]
    return bool(np.all(np.diff(steps) >= 0))  # only -1s, then only +1s


def multiply_accumulates(fn) -> float:
    """Multiply-accumulates of the convolutions and matmuls that ``fn()`` runs."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results/demo", help="results/<experiment> of a finished run")
    p.add_argument("--configfile", default="configs/demo.yaml")
    p.add_argument("--images", type=int, default=150)
    a = p.parse_args()
    import yaml

    config = yaml.safe_load(Path(a.configfile).read_text())
    settings = load_section("seeds", config["seeds"])
    grid = search_grid(settings)
    results = Path(a.results)
    model = load_model(results / "bas_seed" / "model.pt")
    seeds = load_index(results / "seeds" / "index.json")
    labels = load_label_cache(results / "data" / "labels" / f"{config['data']['eval_split']}.json")
    root = results / "data" / "VOC2012" if config["data"]["root"] is None else Path(config["data"]["root"])
    torch.set_num_threads(1)
    counts, modal, export_macs, search_macs = [], 0, [], []
    for image_id in [i for i, c in labels.items() if c][: a.images]:
        maps = torch.from_numpy(load_seed(seeds[image_id])["high_res"]).float()
        image = load_image(root, image_id)
        export_macs.append(multiply_accumulates(
            lambda: seed_maps(model, image, labels[image_id], settings, torch.device("cpu"))))
        with torch.no_grad():
            x3 = model.extract(normalize(image).unsqueeze(0))[0]
        f2 = multiply_accumulates(lambda: model.classify(x3.unsqueeze(0)))
        search_macs.append((len(grid) * len(labels[image_id]) + 1) * f2)
        with torch.no_grad():
            masks = class_masks(maps, torch.tensor(grid, dtype=torch.float32), tuple(x3.shape[1:]))
            channels = torch.tensor([c - 1 for c in labels[image_id]])
            l_bas, l_ac = amc_losses(model.classify, x3, channels, masks)
        scores = threshold_scores(l_bas, l_ac, settings["threshold_search"]["ac_weight"]).numpy()
        counts.append(evaluations_with_bound(scores, l_ac.mean(dim=1).numpy()))
        modal += unimodal(scores)
    print(f"{len(counts)} images, grid of {len(grid)} thresholds ({grid[0]}..{grid[-1]})")
    print(f"bound pruning (exact): {np.mean(counts):.2f} of {len(grid)} thresholds evaluated on average "
          f"(saves {100 * (1 - np.mean(counts) / len(grid)):.1f} % of the F2 passes)")
    print(f"unimodal score curves: {modal} of {len(counts)}")
    export, search = float(np.sum(export_macs)), float(np.sum(search_macs))
    passes = sum(len(grid) * len(labels[i]) + 1 for i in [i for i, c in labels.items() if c][: a.images])
    print(f"FLOP floor: export {export / len(counts) / 1e9:.3f} GMAC/image, search {search / len(counts) / 1e9:.3f} "
          f"GMAC/image ({passes / len(counts):.2f} F2 passes of {search / passes / 1e9:.3f} GMAC): "
          f"(export + search) / export >= {1 + search / export:.2f}x for any exact formulation; "
          f"1.5x leaves {0.5 * (export / len(counts)) / (search / passes):.2f} F2 passes per image")


if __name__ == "__main__":
    main()
