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
    assert losses.mcls_loss(logits, labels).item() == pytest.approx(1.4076059644, abs=1e-6)
    assert expected == pytest.approx(1.4076059644, abs=1e-9)  # the formula above, evaluated by hand


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


def _hand_out(agnostic: bool):
    """One image, two classes, two pixels, with numbers simple enough to do the losses by hand (below)."""
    out = {"scores": torch.tensor([[1.0, 0.0]]),
           "cam": torch.tensor([[[[2.0, 0.0]], [[0.0, 4.0]]]]),  # F: class 0 = [2, 0], class 1 = [0, 4]
           "fg_map": torch.tensor([[[[0.5, 1.0]]]]),             # M_f of the picked class 0
           "bg_scores": torch.tensor([[0.25, 9.0]])}               # S^b of class 0 = 0.25 (class 1 not picked)
    if agnostic:
        out["agnostic_map"] = torch.tensor([[[[0.2, 0.6]]]])
        out["agnostic_bg_scores"] = torch.tensor([[0.5, 3.0]])    # class 1 is not in the image: not counted
    return out


@pytest.mark.parametrize("agnostic, expected", [(False, 2.0535443431), (True, 2.8735443431)])
def test_total_loss_by_hand(agnostic, expected):
    """L = L_mcls + a L_frg + b L_ac + lam L_bas (+ lam w_bas L_bas^agn + w_area L_ac^agn), a=0.2 b=1.2 lam=2:
    L_mcls = log(e^1 + e^0) - 1 = 0.3132617; L_frg = CE(GAP(F * M_f) = [0.5, 2.0], class 0) = log(1 + e^1.5)
    = 1.7014133; L_ac = (0.5 + 1) / 2 = 0.75; L_bas = 0.25 / 1 = 0.25
    -> 0.3132617 + 0.3402827 + 0.9 + 0.5 = 2.0535443;
    agnostic: L_bas^agn = 0.5 / 1 (class 0 only), L_ac^agn = 0.4 -> + 2 * 0.7 * 0.5 + 0.3 * 0.4 = 2.8735443."""
    labels, picked = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    total, terms = losses.bas_training_loss(_hand_out(agnostic), labels, picked, alpha=0.2, beta=1.2, lam=2.0,
                                            agnostic_bas_weight=0.7, agnostic_area_weight=0.3)
    assert total.item() == pytest.approx(expected, abs=1e-6)
    assert terms["mcls"].item() == pytest.approx(0.3132617, abs=1e-6)
    assert terms["frg"].item() == pytest.approx(1.7014133, abs=1e-6)
    assert terms["ac"].item() == pytest.approx(0.75) and terms["bas"].item() == pytest.approx(0.25)
    assert ("agnostic_bas" in terms) == agnostic


def test_lambda_zero_is_the_fpm_baseline_for_both_maps():
    """lam = 0 (Table 6's foreground-prediction-map baseline): no background-suppression term for either map,
    whatever agnostic_bas_weight is; the other terms keep their weights (2.0535443 - 0.5 and 2.8735443 - 1.2)."""
    labels, picked = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    for agnostic, expected in ((False, 1.5535443431), (True, 1.6735443431)):
        total, _ = losses.bas_training_loss(_hand_out(agnostic), labels, picked, alpha=0.2, beta=1.2, lam=0.0,
                                            agnostic_bas_weight=0.7, agnostic_area_weight=0.3)
        assert total.item() == pytest.approx(expected, abs=1e-6)


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
            "generator": norm([net.generator.weight]), "layer3": norm(net.layer3.parameters()),
            "agnostic": norm([net.agnostic.weight])}


@pytest.mark.parametrize("term", ["frg", "ac", "bas"])
def test_map_losses_never_reach_f2_but_reach_the_generator(tiny_net_batch, term):
    net, x, labels, picked = tiny_net_batch
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    g = _grads(net, terms[term])
    assert g["f2"] == 0.0 and g["agnostic"] == 0.0
    assert g["generator"] > 0 and g["layer3"] > 0


@pytest.mark.parametrize("term", ["agnostic_bas", "agnostic_ac"])
def test_agnostic_losses_reach_only_the_agnostic_head(tiny_net_batch, term):
    net, x, labels, picked = tiny_net_batch
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    g = _grads(net, terms[term])
    assert g["agnostic"] > 0
    assert g["f2"] == 0.0 and g["generator"] == 0.0 and g["layer3"] == 0.0


def test_mcls_trains_f2_and_not_the_generator(tiny_net_batch):
    net, x, labels, picked = tiny_net_batch
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    g = _grads(net, terms["mcls"])
    assert g["f2"] > 0 and g["layer3"] > 0
    assert g["generator"] == 0.0


def test_lambda_zero_removes_the_bas_gradient(tiny_net_batch):
    """At lam = 0 the generator's gradient is exactly that of a L_frg + b L_ac (nothing from either L_bas)."""
    net, x, labels, picked = tiny_net_batch
    total0, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=0.0)
    assert terms["bas"].item() > 0 and terms["agnostic_bas"].item() > 0  # still computed, for the log
    net.zero_grad(set_to_none=True)
    total0.backward()
    got = net.generator.weight.grad.clone()
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=0.0)
    net.zero_grad(set_to_none=True)
    (0.2 * terms["frg"] + 1.2 * terms["ac"]).backward()
    assert got.abs().sum() > 0 and torch.allclose(got, net.generator.weight.grad, atol=1e-7)


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


def test_agnostic_backbone_gradient_option_lets_the_agnostic_losses_train_layer3():
    """bas.agnostic_backbone_gradient (a deviation): the agnostic head's losses then reach layer1-3 as well."""
    torch.manual_seed(0)
    net = BASNet(num_fg=4, depth=18, class_agnostic=True, background_bn="running",
                 agnostic_backbone_gradient=True).train()
    x, labels, picked = torch.randn(2, 3, 48, 48), torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]), \
        torch.tensor([2, 1])
    _, terms = losses.bas_training_loss(net(x, picked), labels, picked, alpha=0.2, beta=1.2, lam=1.0)
    net.zero_grad(set_to_none=True)
    terms["agnostic_ac"].backward()
    # the agnostic map is the generator's extra channel: only that channel's weights and layer1-3 get a gradient
    grad = net.generator.weight.grad
    assert grad.shape[0] == 5 and grad[4].abs().sum() > 0 and grad[:4].abs().sum() == 0
    assert sum(float(p.grad.abs().sum()) for p in net.layer3.parameters()) > 0
    assert net.classifier.weight.grad is None and not hasattr(net, "agnostic")
