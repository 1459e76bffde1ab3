"""Issue 6 property tests (hypothesis) on the pure functions of ``imaging/``."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cutout.imaging import masks as M
from cutout.imaging.composite import composite_background, estimate_foreground
from cutout.imaging.model_io import from_model_output, to_model_input
from cutout.imaging.tensors import as_image, as_mask, sanitize

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24))
seeds = st.integers(0, 2**31 - 1)


def _rand(shape, seed, lo=0.0, hi=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


def _soft_mask(shape, seed):
    """A mask with flat 0, flat 1 and soft regions (pure noise would be all edge)."""
    m = _rand(shape, seed)
    return torch.where(m < 0.3, 0.0, torch.where(m > 0.7, 1.0, (m - 0.3) / 0.4)).float()


def _in01(t):
    return bool(torch.isfinite(t).all()) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0


@SETTINGS
@given(dims, seeds, st.sampled_from([torch.float16, torch.float32, torch.float64]),
       st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False))
def test_sanitize_any_values_end_in_01_float32(shape, seed, dtype, lo, hi):
    x = _rand(shape, seed, min(lo, hi), max(lo, hi)).to(dtype)
    x.view(-1)[0] = float("nan")
    y = sanitize(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and _in01(y)


@SETTINGS
@given(dims, seeds, st.integers(1, 4))
def test_as_image_and_as_mask_shapes(shape, seed, channels):
    b, h, w = shape
    img = as_image(_rand((b, h, w, channels), seed), "N", sanitize_values=True)
    assert img.shape == (b, h, w, 3) and img.dtype == torch.float32 and _in01(img)
    m = as_mask(_rand((1, h + 1, w), seed, -2, 3), "N", batch=b, size=(h, w))
    assert m.shape == (b, h, w) and _in01(m)


@SETTINGS
@given(dims, seeds, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_levels_in_01_shape_dtype(shape, seed, black, white, threshold):
    m = _soft_mask(shape, seed)
    out = M.levels(m, min(black, white), max(black, white), threshold)
    assert out.shape == m.shape and out.dtype == m.dtype and _in01(out)


@SETTINGS
@given(dims, seeds, st.integers(-12, 12))
def test_grow_in_01_shape_dtype_and_monotone(shape, seed, n):
    m = _soft_mask(shape, seed)
    out = M.grow(m, n)
    assert out.shape == m.shape and out.dtype == m.dtype and _in01(out)
    if n > 0:
        assert bool((out >= m - 1e-6).all())
    elif n < 0:
        assert bool((out <= m + 1e-6).all())


@SETTINGS
@given(dims, seeds, st.floats(0, 30))
def test_feather_in_01_shape_dtype(shape, seed, r):
    m = _soft_mask(shape, seed)
    out = M.feather(m, r)
    assert out.shape == m.shape and out.dtype == m.dtype and _in01(out)


@SETTINGS
@given(dims, seeds)
def test_invert_twice_is_identity(shape, seed):
    m = _soft_mask(shape, seed)
    once = M.invert(m)
    assert _in01(once) and once.shape == m.shape and once.dtype == m.dtype
    assert torch.allclose(M.invert(once), m, atol=1e-6)
    binary = (m > 0.5).float()
    assert torch.equal(M.invert(M.invert(binary)), binary)  # exact on hard masks


def _hull(binary: np.ndarray) -> np.ndarray:
    """Pixels whose centre lies in the convex hull of the subject's pixel centres (exact, half-planes)."""
    ys, xs = np.nonzero(binary)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    h, w = binary.shape
    gy, gx = np.mgrid[0:h, 0:w]
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    uniq = np.unique(pts, axis=0)
    if len(uniq) <= 2 or np.linalg.matrix_rank(uniq[1:] - uniq[0]) < 2:  # a point or a segment
        if len(uniq) == 1:
            return ((grid == uniq[0]).all(1)).reshape(h, w)
        a, b = uniq[np.argmin(uniq @ [1, 1e-3])], uniq[np.argmax(uniq @ [1, 1e-3])]
        d = b - a
        t = ((grid - a) @ d) / (d @ d)
        cross = np.abs((grid - a)[:, 0] * d[1] - (grid - a)[:, 1] * d[0])
        return ((cross < 1e-9) & (t >= -1e-9) & (t <= 1 + 1e-9)).reshape(h, w)
    from scipy.spatial import ConvexHull

    hull = ConvexHull(uniq)
    inside = (grid @ hull.equations[:, :2].T + hull.equations[:, 2]) <= 1e-9
    return inside.all(1).reshape(h, w)


@settings(max_examples=60, deadline=None)
@given(st.integers(4, 28), st.integers(4, 28), seeds, st.integers(1, 8), st.floats(0.02, 0.5))
def test_grow_then_shrink_never_leaves_the_subjects_hull(h, w, seed, n, density):
    """For a subject at least n + 1 px from the frame edge. (At the edge, shrink treats the outside
    of the frame as subject, so a grown-to-the-edge region is not eroded back from there: see
    docs/reliability.md.)"""
    rng = np.random.default_rng(seed)
    inner = rng.random((h, w)) < density
    if not inner.any():
        inner[h // 2, w // 2] = True
    binary = np.pad(inner, n + 1)
    h, w = binary.shape
    m = torch.from_numpy(binary.astype(np.float32))[None]
    closed = M.grow(M.grow(m, n), -n)[0].numpy()
    assert _in01(torch.from_numpy(closed))
    assert (closed[binary] > 0.5).all()  # a closing contains the original subject
    outside = ~_hull(binary)
    assert (closed[outside] <= 1e-6).all(), f"closing leaked {int((closed[outside] > 1e-6).sum())} px outside the hull"


@SETTINGS
@given(dims, seeds, st.booleans())
def test_composite_all_one_mask_gives_foreground_all_zero_gives_background(shape, seed, decontaminate):
    b, h, w = shape
    fg = _rand((b, h, w, 3), seed)
    bg = _rand((1, h, w, 3), seed + 1)
    ones, zeros = torch.ones(b, h, w), torch.zeros(b, h, w)
    for background in (bg, "#3366CC"):
        out1 = composite_background(fg, ones, background, decontaminate=decontaminate)
        assert out1.shape == (b, h, w, 3) and out1.dtype == torch.float32 and _in01(out1)
        assert torch.allclose(out1, fg, atol=1e-6)
    out0 = composite_background(fg, zeros, bg, decontaminate=decontaminate)
    assert torch.allclose(out0, bg.expand(b, -1, -1, -1), atol=1e-6)
    out0c = composite_background(fg, zeros, "#3366CC", decontaminate=decontaminate)
    assert torch.allclose(out0c, torch.tensor([0x33, 0x66, 0xCC]).float().div(255).expand(b, h, w, 3), atol=1e-6)
    trans = composite_background(fg, ones, "transparent", decontaminate=decontaminate)
    assert trans.shape == (b, h, w, 4) and torch.equal(trans[..., 3], ones)


@SETTINGS
@given(dims, seeds)
def test_composite_and_foreground_stay_in_01(shape, seed):
    b, h, w = shape
    rgb, alpha = _rand((b, h, w, 3), seed), _soft_mask((b, h, w), seed + 7)
    fg = estimate_foreground(rgb, alpha)
    assert fg.shape == rgb.shape and fg.dtype == rgb.dtype and _in01(fg)
    for background in ("white", "blur", "checkerboard", _rand((1, h + 3, w, 3), seed)):
        out = composite_background(rgb, alpha, background)
        assert out.shape == (b, h, w, 3) and _in01(out)


@SETTINGS
@given(dims, seeds, st.booleans())
def test_model_output_any_raw_values_give_01_masks_of_the_frame_size(shape, seed, logits):
    b, h, w = shape
    raw = _rand((b, 1, 7, 9), seed, -50, 50).numpy()
    out = from_model_output(raw, h, w, logits)
    assert out.shape == (b, h, w) and out.dtype == torch.float32 and _in01(out)
    x = to_model_input(_rand((b, h, w, 3), seed), 16, (0.5,) * 3, (1.0,) * 3)
    assert x.shape == (b, 3, 16, 16) and x.dtype == np.float32 and np.isfinite(x).all()
