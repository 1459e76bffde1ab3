"""Motion-compensated temporal smoothing of video-frame masks: ``flow_smooth``.

Each frame's mask is averaged with its neighbours' masks *aligned to it* by optical flow
(OpenCV's DIS flow, computed on a shrunk grey copy of the frames), so a subject that moves
is averaged with itself rather than with the background it left. Flow is computed between
consecutive frames only and followed hop by hop to the farther neighbours: a short step is
what optical flow estimates best (fast motion over three frames is where a direct flow
fails), and it is two flows per frame instead of two per neighbour. A hop only counts where
the alignment is trustworthy: its trust falls with the colour error of the warped frame
(occlusions, fast motion, flow failures keep the frame's own mask) and is zero where the flow
there and back does not return to the same pixel, or leaves the picture; a neighbour's weight
is the product of the trust of the hops that reach it, spread to the pixels next to it (a 3×3
maximum): along a moving edge the flow's trust is patchy exactly where the soft edge moves, and
the mask there is smooth enough for a pixel to borrow its neighbour's alignment.
The average is taken over the masks' logits (each mask clipped to [0.01, 0.99] first), not their
values: a mean of probabilities turns one frame's stray 0.5 among confident neighbours into a
grey that comes and goes, and widens the soft edge where it moves; a mean of logits is the
frames' evidence added up, so confident neighbours outvote a stray value and the edge keeps
its width.
The averaging runs at the flow's working size (the network's masks are no finer) and the
correction is added to the full-size mask; a pixel whose colour and mask are the same in every
frame of the window keeps its value exactly.

Frames stream through a sliding window: flows are computed once per frame pair and dropped
as soon as no frame of the window needs them, so memory is a few frames' worth whatever the
batch length.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# Tolerance and working size from the first halves of the two dev sequences, the logit average and its
# clip on six tuning sequences, radius and consistency on ten tuning sequences (docs/video.md).
FLOW_DEFAULTS = {"radius": 5, "colour_tolerance": 0.08, "consistency_px": 3.0, "work_size": 480,
                 "logit_clip": 0.01, "trust_spread": 3}
AVERAGES = ("logit", "mean")
MIN_WORK_SIDE = 16  # px: the least side of the working copy (OpenCV's DIS flow refuses under 12)


def _need_cv2(node: str):
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError(f"{node}: temporal_mode 'motion' needs OpenCV "
                           "(pip install opencv-python-headless, or any opencv-python build)") from e
    return cv2


class _Frames:
    """Per-frame data at the flow's working size, made on first use and dropped when done."""

    def __init__(self, masks: torch.Tensor, image: torch.Tensor, size: tuple[int, int], cv2, clip: float | None):
        self.masks, self.image, self.size, self.cv2, self.clip = masks, image, size, cv2, clip
        self.cache: dict[int, tuple] = {}

    def full(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(colour float32 [H,W,3], mask float32 [H,W]) of frame ``i`` at full size (views)."""
        return self.image[i].numpy(), self.masks[i].numpy()

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(grey uint8 [h,w], colour float32 [h,w,3], mask float32 [h,w], the value averaged
        [h,w]: the mask's logit or the mask) at the working size."""
        if i not in self.cache:
            cv2, (h, w) = self.cv2, self.size
            rgb, m = self.full(i)
            if rgb.shape[:2] != (h, w):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                m = cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA)
            rgb = np.clip(rgb, 0.0, 1.0)
            grey = cv2.cvtColor((rgb * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)
            m = np.ascontiguousarray(m, dtype=np.float32)
            if self.clip is None:
                v = m
            else:
                c = np.clip(m, self.clip, 1.0 - self.clip)
                v = np.log(c / (1.0 - c))
            self.cache[i] = (grey, np.ascontiguousarray(rgb), m, v)
        return self.cache[i]

    def drop_before(self, i: int) -> None:
        for k in [k for k in self.cache if k < i]:
            del self.cache[k]


def _same_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[H,W] True where the two [H,W,C] arrays are equal in every channel."""
    eq = a == b
    out = eq[..., 0]
    for c in range(1, eq.shape[-1]):
        out &= eq[..., c]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def flow_smooth(masks: torch.Tensor, image: torch.Tensor, strength: float = 1.0,
                radius: int = FLOW_DEFAULTS["radius"],
                colour_tolerance: float = FLOW_DEFAULTS["colour_tolerance"],
                consistency_px: float = FLOW_DEFAULTS["consistency_px"],
                work_size: int = FLOW_DEFAULTS["work_size"], average: str = "logit",
                logit_clip: float = FLOW_DEFAULTS["logit_clip"],
                trust_spread: int = FLOW_DEFAULTS["trust_spread"], node: str = "Cutout",
                on_frame: Callable[[], None] | None = None) -> torch.Tensor:
    """Smooth consecutive video-frame masks ``[B,H,W]`` along the motion of the frames ``image``
    ``[B,H,W,3]`` (same batch and size).

    At the working size (long side shrunk to ``work_size``, never enlarged), with
    v = logit(clip(m, logit_clip, 1 − logit_clip)) (``average`` 'logit') or v = m ('mean'),
    frame t's averaged value is v̄_t = v_t + Σ w_k (a_k − v_t) / (1 + Σ w_k) over the neighbours
    k = t±1..radius, a_k the neighbour's v warped onto frame t along the chain of consecutive
    flows t→t±1→…→k,
    w_k = strength^|t−k| · Π trust of the hops (then the maximum over a ``trust_spread`` ×
    ``trust_spread`` square, 0 or 1: none), a hop's trust exp(−(e/colour_tolerance)²) with
    e the 3×3-averaged colour error of the warped frame, 0 where the forward-backward flow
    error exceeds ``consistency_px`` or the flow leaves the picture. The correction
    (σ(v̄_t) − σ(v_t) for 'logit', v̄_t − v_t for 'mean') is upsampled and added to the
    full-size mask, except on pixels whose colour and mask are identical in every frame of the
    window (kept exactly). ``on_frame`` is called
    after each frame (progress and Cancel).
    """
    n, H, W = masks.shape
    if strength <= 0 or n < 2 or radius < 1:
        return masks.clone()
    if average not in AVERAGES:
        raise ValueError(f"{node}: average is {average!r}, expected one of {AVERAGES}")
    cv2 = _need_cv2(node)
    strength = min(float(strength), 1.0)
    scale = min(1.0, work_size / max(H, W)) if work_size > 0 else 1.0
    # DIS flow needs 12 px or more on a side: a tiny frame is worked on enlarged
    h, w = max(MIN_WORK_SIDE, round(H * scale)), max(MIN_WORK_SIDE, round(W * scale))
    src = masks.detach().float().cpu().contiguous()
    rgb_full = image.detach().float().cpu().contiguous()
    frames = _Frames(src, rgb_full, (h, w), cv2, float(logit_clip) if average == "logit" else None)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    spread = np.ones((trust_spread, trust_spread), np.uint8) if trust_spread > 1 else None
    # hops[(a, b)], b = a ± 1: where each pixel of frame a lands in frame b, and how far to trust it
    hops: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    flows: dict[tuple[int, int], np.ndarray] = {}

    def flow(a: int, b: int) -> np.ndarray:
        """Working-size flow from frame a to frame b: pixel x of a is at x + flow(x) in b."""
        if (a, b) not in flows:
            flows[(a, b)] = dis.calc(frames.get(a)[0], frames.get(b)[0], None)
        return flows[(a, b)]

    def hop(a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x in b, y in b, weight) for every pixel of frame a, b a neighbour of a."""
        if (a, b) not in hops:
            f_ab, f_ba = flow(a, b), flow(b, a)
            mx, my = xs + f_ab[..., 0], ys + f_ab[..., 1]
            # forward-backward: follow a->b, then b->a from the landing point: should come home
            back = cv2.remap(f_ba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fb = (f_ab[..., 0] + back[..., 0]) ** 2 + (f_ab[..., 1] + back[..., 1]) ** 2
            rgb_a, rgb_b = frames.get(a)[1], frames.get(b)[1]
            warped = cv2.remap(rgb_b, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            diff = np.abs(warped - rgb_a)
            err = cv2.blur((diff[..., 0] + diff[..., 1] + diff[..., 2]) * (1.0 / 3.0), (3, 3))
            wk = np.exp(-np.square(err * (1.0 / colour_tolerance)))
            wk[(fb > consistency_px ** 2) | (mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)] = 0.0
            hops[(a, b)] = (mx, my, wk)
        return hops[(a, b)]

    # same[t]: pixel identical (colour and mask) in frames t and t+1; equality is transitive,
    # so a pixel identical across a window is the AND of the window's consecutive maps
    same: dict[int, np.ndarray] = {}

    def same_next(t: int) -> np.ndarray:
        if t not in same:
            (ca, ma), (cb, mb) = frames.full(t), frames.full(t + 1)
            same[t] = _same_pixels(ca, cb) & (ma == mb)
        return same[t]

    out = torch.empty((n, H, W), dtype=torch.float32)
    for t in range(n):
        v_t = frames.get(t)[3]
        acc = np.zeros((h, w), np.float32)
        wsum = np.ones((h, w), np.float32)
        for step in (-1, 1):
            # follow frame t's pixels hop by hop (t -> t±1 -> t±2 ...), trust multiplying along the way
            cx, cy, trust = xs, ys, None
            for d in range(1, radius + 1):
                j, k = t + step * (d - 1), t + step * d
                if not 0 <= k < n:
                    break
                mx, my, wk = hop(j, k)
                if trust is None:
                    cx, cy, trust = mx, my, wk
                else:
                    trust = trust * cv2.remap(wk, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                              borderValue=0.0)
                    cx, cy = (cv2.remap(mx, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                              cv2.remap(my, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
                a_k = cv2.remap(frames.get(k)[3], cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                wd = (trust if spread is None else cv2.dilate(trust, spread)) * np.float32(strength ** d)
                acc += wd * (a_k - v_t)
                wsum += wd
        corr = acc / wsum
        if average == "logit":
            corr = _sigmoid(v_t + corr) - _sigmoid(v_t)
        if (h, w) != (H, W):
            corr = cv2.resize(corr, (W, H), interpolation=cv2.INTER_LINEAR)
        lo, hi = max(0, t - radius), min(n - 1, t + radius)
        keep = same_next(lo).copy()
        for j in range(lo + 1, hi):
            keep &= same_next(j)
        corr[keep] = 0.0
        out[t] = torch.from_numpy(np.clip(src[t].numpy() + corr, 0.0, 1.0))
        for cache in (flows, hops):
            for key in [key for key in cache if min(key) < t + 1 - radius]:
                del cache[key]
        for key in [key for key in same if key < t + 1 - radius]:
            del same[key]
        frames.drop_before(t + 1 - radius)
        if on_frame is not None:
            on_frame()
    return out.to(masks.device)
