"""BAS losses on hand-computed tensors, the S^b > S replacement, class sampling and gradient routing."""
import copy
import math

import pytest
import torch

from bas_seed import losses
from bas_seed.model import BASNet

torch.set_num_threads(1)


def test_mcls_single_positive_is_softmax_against_negatives():
    logits = torch.tensor([[1.0, 0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    expected = -math.log(math.e / (1 + math.e + math.e ** 2))  # 1.40760...
    assert losses.mcls_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.40760, abs=1e-5)


def test_mcls_two_positives_each_against_negatives_only_and_divided_by_batch():
    logits = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    image0 = (math.log(1 + math.e) - 1) + (math.log(1 + math.e ** 2) - 2)  # 0.31326 + 0.12693: other positive ignored
    image1 = 1.40760596
    assert losses.mcls_loss(logits, labels).item() == pytest.approx((image0 + image1) / 2, abs=1e-5)


def test_mcls_matches_slow_per_positive_loop_on_random_input():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g) * 3
    labels = (torch.rand(5, 7, generator=g) < 0.4).float()
    labels[:, 0] = 1.0
    slow = 0.0
    for b in range(5):
        neg = logits[b][labels[b] == 0]
        for i in torch.nonzero(labels[b]).flatten():
            both = torch.cat([logits[b, i:i + 1], neg])
            slow += -torch.log_softmax(both, 0)[0].item()
    assert losses.mcls_loss(logits, labels).item() == pytest.approx(slow / 5, rel=1e-5)


def test_mcls_all_positive_gives_zero_and_shape_mismatch_is_an_error():
    assert losses.mcls_loss(torch.tensor([[3.0, -1.0]]), torch.ones(1, 2)).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shape"):
        losses.mcls_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_frg_loss_hand_value_and_gradient_only_into_the_map():
    cam = torch.tensor([[[[2.0, 4.0]], [[0.0, 2.0]]]], requires_grad=True)  # (1, 2, 1, 2)
    fg_map = torch.tensor([[[[0.5, 1.0]]]], requires_grad=True)
    loss = losses.frg_loss(cam, fg_map, torch.tensor([0]))
    # masked scores: class 0 (1 + 4) / 2 = 2.5, class 1 (0 + 2) / 2 = 1 -> -log softmax_0 = log(1 + e^-1.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.5)), abs=1e-6)
    loss.backward()
    assert cam.grad is None
    assert fg_map.grad is not None and fg_map.grad.abs().sum() > 0


def test_ac_loss_is_the_mean_of_the_map():
    fg_map = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    assert losses.ac_loss(fg_map).item() == pytest.approx((0.5 + 1.0) / 2)


def test_bas_loss_relu_ratio_and_replacement_where_background_exceeds():
    score = torch.tensor([2.0, 1.0, -1.0, 2.0], requires_grad=True)
    bg = torch.tensor([1.0, 3.0, 0.5, -1.0], requires_grad=True)
    loss = losses.bas_loss(score, bg)
    # 1/2 ; 3 > 1 -> 1 ; relu(S)=0 < 0.5 -> 1 ; relu(S^b)=0 -> 0
    assert loss.item() == pytest.approx((0.5 + 1.0 + 1.0 + 0.0) / 4)
    loss.backward()
    assert score.grad is None  # S is detached
    assert bg.grad.tolist() == pytest.approx([1 / (2.0 + 1e-8) / 4, 0.0, 0.0, 0.0])  # replaced entries: no gradient


def test_bas_ratio_is_replaced_not_clamped_and_eps_guards_zero_score():
    ratio = losses.bas_ratio(torch.tensor([0.0, 4.0]), torch.tensor([0.0, 4.0 + 1e-3]))
    assert ratio.tolist() == [0.0, 1.0]


def test_agnostic_bas_sums_over_present_classes():
    scores = torch.tensor([[2.0, 1.0, 4.0]])
    agnostic_bg = torch.tensor([[1.0, 2.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    assert losses.agnostic_bas_loss(scores, agnostic_bg, labels).item() == pytest.approx(0.5 + 1.0)


def test_pick_classes_only_positives_reproducible_and_uniform():
    labels = torch.tensor([[0.0, 1.0, 0.0, 1.0]] * 2000)
    picks = losses.pick_classes(labels, torch.Generator().manual_seed(3))
    assert set(picks.tolist()) == {1, 3}
    assert 0.45 < (picks == 1).float().mean().item() < 0.55
    assert torch.equal(picks, losses.pick_classes(labels, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="at least one"):
        losses.pick_classes(torch.tensor([[0.0, 0.0]]))


def test_cam_loss_is_multilabel_soft_margin():
    value = losses.cam_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]]))
    assert value.item() == pytest.approx((math.log(2) + math.log(1 + math.e ** 2)) / 2, abs=1e-6)


def _fake_out(agnostic: bool):
    g = torch.Generator().manual_seed(1)
    out = {"scores": torch.randn(2, 3, generator=g), "cam": torch.randn(2, 3, 2, 2, generator=g),
           "fg_map": torch.rand(2, 1, 2, 2, generator=g), "bg_scores": torch.randn(2, 3, generator=g)}
    if agnostic:
        out["agnostic_map"] = torch.rand(2, 1, 2, 2, generator=g)
        out["agnostic_bg_scores"] = torch.randn(2, 3, generator=g)
    return out


@pytest.mark.parametrize("agnostic", [False, True])
def test_total_loss_is_the_weighted_sum_of_its_terms(agnostic):
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    picked = torch.tensor([2, 1])
    total, terms = losses.bas_training_loss(_fake_out(agnostic), labels, picked, alpha=0.2, beta=1.2, lam=1.0,
                                            agnostic_bas_weight=0.7, agnostic_area_weight=0.3)
    expected = terms["mcls"] + 0.2 * terms["frg"] + 1.2 * terms["ac"] + terms["bas"]
    if agnostic:
        expected = expected + 0.7 * terms["agnostic_bas"] + 0.3 * terms["agnostic_ac"]
    else:
        assert "agnostic_bas" not in terms
    assert total.item() == pytest.approx(expected.item())


# ---- gradient routing through the real network -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_net_batch():
    """A net whose background scores lie strictly between 0 and S, so L_bas is not replaced by the constant 1
    (positive classifier weights on post-ReLU features; running-statistics BN in the background branch, where the
    erasure lowers the scores; the batch-statistics mode is checked against the deepcopy reference below)."""
    torch.manual_seed(0)
    net = BASNet(num_fg=4, depth=18, class_agnostic=True, background_bn="running").train()
    with torch.no_grad():
        net.classifier.weight.abs_()
    x = torch.randn(2, 3, 48, 48)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    picked = torch.tensor([2, 1])
    with torch.no_grad():
        out = net(x, picked)
    for bg in (out["bg_scores"], out["agnostic_bg_scores"]):
        s, s_b = losses.picked_scores(out["scores"], picked), losses.picked_scores(bg, picked)
        assert bool(((0 < s_b) & (s_b < s)).all()), "precondition of the routing tests"
    return net, x, labels, picked


def _grads(net, loss):
    net.zero_grad(set_to_none=True)
    loss.backward()
    def norm(params):
        return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)
    return {"f2": norm(list(net.layer4.parameters()) + [net.classifier.weight]),
            "generator": norm([net.generator.weight]), "layer3": norm(net.layer3.parameters())}


@pytest.mark.parametrize("term", ["frg", "ac", "bas", "agnostic_bas", "agnostic_ac"])
def test_map_losses_never_reach_f2_but_reach_the_generator(tiny_net_batch, term):
    net, x, labels, picked = tiny_net_batch
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    g = _grads(net, terms[term])
    assert g["f2"] == 0.0
    assert g["generator"] > 0 and g["layer3"] > 0


def test_mcls_trains_f2_and_not_the_generator(tiny_net_batch):
    net, x, labels, picked = tiny_net_batch
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    g = _grads(net, terms["mcls"])
    assert g["f2"] > 0 and g["layer3"] > 0
    assert g["generator"] == 0.0


def test_lambda_zero_removes_the_bas_gradient(tiny_net_batch):
    net, x, labels, picked = tiny_net_batch
    out = net(x, picked)
    total0, terms = losses.bas_training_loss(out, labels, picked, alpha=0.0, beta=0.0, lam=0.0,
                                             agnostic_bas_weight=0.0, agnostic_area_weight=0.0)
    assert terms["bas"].item() >= 0  # still computed for the log
    g = _grads(net, total0)
    assert g["generator"] == 0.0


def test_background_branch_equals_frozen_deepcopy_on_detached_features():
    torch.manual_seed(0)
    net = BASNet(num_fg=4, depth=18, class_agnostic=True, background_bn="batch").train()
    x = torch.randn(2, 3, 48, 48)
    x3 = net.extract(x).detach().requires_grad_(True)
    fg_map = net.generate(x3)[:, :1].detach().requires_grad_(True)
    running_before = net.layer4[0].bn1.running_mean.clone()
    scores = net.background_scores(x3, fg_map)
    # the reference: fresh deepcopies of layer4 + classifier, train-mode BN, on x3.detach() * (1 - M_f)
    layer4_copy, classifier_copy = copy.deepcopy(net.layer4), copy.deepcopy(net.classifier)
    with torch.no_grad():
        reference = classifier_copy(layer4_copy(x3.detach() * (1 - fg_map))).mean(dim=(2, 3))
    assert torch.allclose(scores, reference, atol=1e-5)
    assert torch.equal(net.layer4[0].bn1.running_mean, running_before)  # real running stats untouched
    net.zero_grad(set_to_none=True)
    scores.sum().backward()
    assert x3.grad is None  # detached features
    assert fg_map.grad is not None and fg_map.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.layer4.parameters()) and net.classifier.weight.grad is None


def test_background_branch_running_bn_mode_uses_running_statistics():
    torch.manual_seed(0)
    net = BASNet(num_fg=3, depth=18, class_agnostic=False, background_bn="running").train()
    x3 = torch.randn(2, 256, 3, 3)
    fg_map = torch.rand(2, 1, 3, 3)
    net.layer4.eval()
    with torch.no_grad():
        reference = net.classifier(net.layer4(x3 * (1 - fg_map))).mean(dim=(2, 3))
    net.train()
    assert torch.allclose(net.background_scores(x3, fg_map), reference, atol=1e-5)
    assert net.layer4.training  # mode restored
