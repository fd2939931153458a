"""Initial weights from a local checkpoint in the deeplab-pytorch (kazuto1011) format: the key converter and the
checked load into the mmseg model (backbone ``DeepLabResNet`` + ``DeepLabV2Head``).

deeplab-pytorch key layout (both its current and its older module names are accepted; a ``base.`` prefix from its
MSC wrapper and a ``module.`` prefix from DataParallel are stripped):
    layer1.conv1.{conv,bn}.*                       -> backbone.conv1.* / backbone.bn1.*
    layer{2..5}.block{j}.{reduce,conv3x3,increase}.{conv,bn}.*
                                                   -> backbone.layer{1..4}.{j-1}.conv{1,2,3}.* / bn{1,2,3}.*
    layer{2..5}.block{j}.{shortcut,proj}.{conv,bn}.*  -> backbone.layer{..}.{j-1}.downsample.{0,1}.*
    aspp.c{i}.* (or aspp.stages.c{i}.*)            -> decode_head.aspp.{i}.*
Keys already in mmseg form (``backbone.*``, ``decode_head.*``) pass through unchanged.

A ``bas_seed`` checkpoint (``segment.init.from_bas``, not the reference) has a torchvision-layout ResNet under
``stem.0`` (conv1), ``stem.1`` (bn1) and ``layer1..4``, which is mmseg's ``ResNet`` layout with style ``pytorch``;
its generator and classifier have no counterpart (``convert_bas_state_dict``). The file format is read here, the
bas_seed package is not imported.
"""
from __future__ import annotations

import re
from pathlib import Path

from wsss_common.io import DataError, load_torch_file
from wsss_common.resnet import torchvision_state_from_bas

_BLOCK = re.compile(r"^layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|shortcut|proj)\.(conv|bn)\.(.+)$")
_STEM = re.compile(r"^layer1\.conv1\.(conv|bn)\.(.+)$")
_ASPP = re.compile(r"^aspp\.(?:stages\.)?c(\d+)\.(.+)$")
_INNER = {"reduce": "1", "conv3x3": "2", "increase": "3"}


def convert_key(key: str) -> str | None:
    """The mmseg name of one deeplab-pytorch key, or None for a key with no counterpart (e.g. a classifier fc)."""
    for prefix in ("module.", "base."):
        key = key.removeprefix(prefix)
    if key.startswith(("backbone.", "decode_head.")):
        return key
    m = _STEM.match(key)
    if m:
        return f"backbone.{'conv1' if m[1] == 'conv' else 'bn1'}.{m[2]}"
    m = _BLOCK.match(key)
    if m:
        stage, block, part, kind, rest = int(m[1]) - 1, int(m[2]) - 1, m[3], m[4], m[5]
        if part in ("shortcut", "proj"):
            return f"backbone.layer{stage}.{block}.downsample.{0 if kind == 'conv' else 1}.{rest}"
        return f"backbone.layer{stage}.{block}.{kind if kind == 'bn' else 'conv'}{_INNER[part]}.{rest}"
    m = _ASPP.match(key)
    if m:
        return f"decode_head.aspp.{m[1]}.{m[2]}"
    return None


def convert_state_dict(state: dict) -> tuple[dict, list[str]]:
    """(mmseg state dict, deeplab-pytorch keys that have no counterpart)."""
    out, unmapped = {}, []
    for key, value in state.items():
        new = convert_key(key)
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    return out, unmapped


def convert_bas_state_dict(state: dict) -> tuple[dict, list[str]]:
    """(mmseg backbone state dict, keys with no counterpart) of a ``bas_seed`` network's state dict."""
    renamed, unmapped = torchvision_state_from_bas(state)
    return {"backbone." + k: v for k, v in renamed.items()}, unmapped


def read_bas_state_dict(path: str | Path) -> dict:
    """The network tensors of a ``bas_seed.train`` checkpoint (``model`` entry), loaded with ``weights_only``."""
    path = Path(path)
    obj = load_torch_file(path, "BAS checkpoint (segment.init.from_bas)")
    state = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or "stem.0.weight" not in state:
        raise DataError(f"{path} is not a bas_seed checkpoint (no model.stem.0.weight)")
    return state


def read_state_dict(path: str | Path) -> dict:
    """The tensors of a local ``.pth`` file (a bare state dict or one under ``state_dict``/``model``), loaded with
    ``weights_only=True``."""
    path = Path(path)
    obj = load_torch_file(path, "initial weights (segment.init.checkpoint)")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise DataError(f"{path} is not a state dict of tensors")
    return obj


def match_init_state(model_state: dict, converted: dict, *, load_head: bool, source: str) -> tuple[dict, dict]:
    """The subset of ``converted`` to load into a model whose state dict is ``model_state``, and a report.

    Every backbone tensor must be present with the right shape (BN ``num_batches_tracked`` counters, unused with
    frozen BN, may be absent); otherwise a DataError names ``source`` and the first offending keys. Head tensors
    are loaded only with ``load_head`` and matching shapes (deeplab-pytorch loads its init with ``strict=False``
    "to skip ASPP"), so a COCO/ImageNet init never sets the class logits of another label set.
    """
    backbone_keys = [k for k in model_state if k.startswith("backbone.")]
    missing = [k for k in backbone_keys if k not in converted and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} {tuple(converted[k].shape)} vs {tuple(model_state[k].shape)}" for k in backbone_keys
             if k in converted and tuple(converted[k].shape) != tuple(model_state[k].shape)]
    if missing or wrong:
        raise DataError(f"{source} does not fit the configured backbone: {len(missing)} missing tensors "
                        f"{missing[:4]}, {len(wrong)} with other shapes {wrong[:4]}")
    selected = {k: converted[k] for k in backbone_keys if k in converted}
    head_keys = [k for k in converted if k.startswith("decode_head.")]
    head_loaded = []
    if load_head:
        for k in head_keys:
            if k in model_state and tuple(converted[k].shape) == tuple(model_state[k].shape):
                selected[k] = converted[k]
                head_loaded.append(k)
    unexpected = [k for k in converted if k not in model_state]
    report = {"backbone_tensors": len([k for k in selected if k.startswith("backbone.")]),
              "head_tensors_loaded": len(head_loaded), "head_tensors_skipped": len(head_keys) - len(head_loaded),
              "unexpected": unexpected[:20]}
    return selected, report
