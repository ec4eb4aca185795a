"""The pose network: invariant features, equivariant denoised pose, the score it returns, its spec."""
import pytest
import torch

pytest.importorskip("roma")

from stochgen import nets, processes  # noqa: E402
from stochgen.spaces import se3  # noqa: E402

from domains.pose.nets import RegistrationNet, fpfh, knn, oriented_normals  # noqa: E402

F64 = torch.float64


FEATURES = ("ppf", "fpfh", "both")


def _setup(seed=0, n=96, m=70, features="ppf"):
    g = torch.Generator().manual_seed(seed)
    proc = processes.SE3Diffusion(trans_scale=0.2)
    torch.manual_seed(seed)
    net = RegistrationNet(proc.spec(), k=8, k2=12, width=16, hidden=16, features=features, fpfh_radius=0.3,
                          fpfh_k=24).double()
    src = torch.randn(2, n, 3, generator=g, dtype=F64) * torch.tensor([0.4, 0.25, 0.1], dtype=F64)
    T = se3.random((2,), g, F64, translation_std=0.1)
    tgt = se3.apply(T, src)[:, :m] + 0.01 * torch.randn(2, m, 3, generator=g, dtype=F64)
    x = se3.random((2,), g, F64, translation_std=0.1)
    return proc, net, src, tgt, x, g


@pytest.mark.parametrize("features", FEATURES)
def test_features_are_invariant_to_rigid_motion(features):
    _, net, src, _, _, g = _setup(features=features)
    Q = se3.random((2,), g, F64, translation_std=1.0)
    f1, s1 = net.features(src)
    f2, s2 = net.features(se3.apply(Q, src))
    assert (f1 - f2).abs().max() < 1e-9 * (1 + f1.abs().max())
    assert (s1 - s2).abs().max() < 1e-12


@pytest.mark.parametrize("features", FEATURES)
def test_denoised_pose_is_equivariant_and_score_is_its_conditional_score(features):
    """Moving the target by Q and the current pose by Q moves the prediction by Q (x0' = Q x0), so a
    rotation of 180 degrees is handled like any other; the output is conditional_score(x0, x, t)."""
    proc, net, src, tgt, x, g = _setup(1, features=features)
    t = torch.tensor([0.3, 0.8], dtype=F64)
    Q = se3.random((2,), g, F64, translation_std=0.5)
    x0 = net.denoised_pose(x, t, src, tgt)
    x0q = net.denoised_pose(se3.compose(Q, x), t, src, se3.apply(Q, tgt))
    assert (x0q - se3.compose(Q, x0)).abs().max() < 1e-8
    out = net(x, t, source=src, target=tgt)
    assert out.shape == (2, 6)
    assert (out - proc.conditional_score(x0, x, t)).abs().max() < 1e-9 * (1 + out.abs().max())


@pytest.mark.parametrize("features", FEATURES)
def test_backward_and_spec_round_trip(features):
    proc, net, src, tgt, x, _ = _setup(2, features=features)
    t = torch.tensor([0.05, 0.6], dtype=F64)
    net(x, t, source=src, target=tgt).square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    again = nets.build(net.spec()).double()
    again.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x, t, source=src, target=tgt), net(x, t, source=src, target=tgt))
    # eval-mode feature cache: same answer for one pair shared by many poses
    net.eval()
    with torch.no_grad():
        xs = se3.random((5,), torch.Generator().manual_seed(3), F64, translation_std=0.1)
        a = net(xs, 0.4, source=src[:1], target=tgt[:1])
        b = net(xs, 0.4, source=src[:1], target=tgt[:1])
        c = torch.stack([net(xs[i:i + 1], 0.4, source=src[:1].clone(), target=tgt[:1].clone())[0] for i in range(5)])
    assert torch.equal(a, b) and (a - c).abs().max() < 1e-9 * (1 + a.abs().max())


def test_bad_input_is_named():
    proc, net, src, tgt, x, _ = _setup()
    with pytest.raises(ValueError, match="target= clouds"):
        net(x, 0.5, source=src, target=tgt[..., :2])
    with pytest.raises(ValueError, match="poses"):
        net(x[:, :3], 0.5, source=src, target=tgt)
    with pytest.raises(ValueError, match="SE3Diffusion"):
        RegistrationNet(processes.VP().spec())
    with pytest.raises(ValueError, match="features must be one of"):
        RegistrationNet(processes.SE3Diffusion().spec(), features="shot")
    with pytest.raises(ValueError, match="fpfh_radius"):
        RegistrationNet(processes.SE3Diffusion().spec(), features="fpfh", fpfh_radius=0.0)


def test_fpfh_histograms_by_their_definition():
    """Each of the three sub-histograms of a point's SPFH counts every neighbour within the radius
    once, so it sums to 1, and the FPFH (SPFH + weighted mean of the neighbours' SPFH) / 2 too; a
    neighbourhood of a plane has phi = 0 and alpha = 0 for every pair (normals parallel and
    perpendicular to the offsets), so all the mass is in the middle bins of alpha and phi."""
    g = torch.Generator().manual_seed(4)
    p = torch.rand(1, 200, 3, generator=g, dtype=F64)
    p[..., 2] = 0.0  # a plane
    idx = knn(p, 16)
    n = oriented_normals(p, idx)
    h = fpfh(p, n, idx, radius=0.5, bins=11)
    assert h.shape == (1, 200, 33)
    sums = h.reshape(1, 200, 3, 11).sum(-1)
    assert (sums - 1).abs().max() < 1e-12
    alpha, phi = h[0, :, :11], h[0, :, 11:22]
    assert (alpha[:, 5] - 1).abs().max() < 1e-12 and (phi[:, 5] - 1).abs().max() < 1e-12
    # a curved surface spreads phi away from the middle bin
    s = torch.randn(1, 300, 3, generator=g, dtype=F64)
    s = s / s.norm(dim=-1, keepdim=True)
    i2 = knn(s, 16)
    hs = fpfh(s, oriented_normals(s, i2), i2, radius=0.6)
    assert hs[0, :, 11:22][:, 5].mean() < 0.9


def test_match_rows_uses_evenly_spaced_target_points():
    """At inference, match_rows=r matches the r evenly spaced target rows only: the same as giving the
    network those target rows with the whole cloud's features; r >= M changes nothing; training ignores it."""
    proc, net, src, tgt, x, _ = _setup(5, features="fpfh")
    net.eval()
    t = torch.tensor([0.2, 0.7], dtype=F64)
    with torch.no_grad():
        full = net.denoised_pose(x, t, src, tgt)
        net.match_rows = tgt.shape[1]
        assert torch.equal(net.denoised_pose(x, t, src, tgt), full)
        net.match_rows = 20
        part = net.denoised_pose(x, t, src, tgt)
        keep = torch.linspace(0, tgt.shape[1] - 1, 20).round().long()
        ht, _ = net.features(tgt)
        net.match_rows = None
        net.features, orig = (lambda p: (ht[:, keep], net.__class__.features(net, src)[1])
                              if p.shape[1] == 20 else orig(p)), net.features
        again = net.denoised_pose(x, t, src, tgt[:, keep])
    assert (part - again).abs().max() < 1e-10
    assert (part - full).abs().max() > 1e-6
    assert torch.allclose(part[:, :3, :3] @ part[:, :3, :3].transpose(1, 2), torch.eye(3, dtype=F64).expand(2, 3, 3),
                          atol=1e-9)
