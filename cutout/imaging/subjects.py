"""Subjects in a mask: how many, keeping one, and how much a result is to be doubted.

``doubt`` scores a cut-out from its mask alone (no ground truth), so a person reviews the few
results most likely wrong instead of all of them. Each cue is 0..1 and the score is
1 − Π(1 − cue): one strong reason is enough to rank a result high. The cues are the failure
signs practitioners name: many mid-range alpha values (glass, smoke, an unsure model), a
subject cut by the frame edge, a tiny or frame-filling subject, several separate subjects, a mask
that changes under a small perturbation (a threshold shift, or the network's other look).
docs/dataset.md shows how the score ranks the eval photos' real failures.
"""

from __future__ import annotations

import torch

from .crop import SUBJECT_THRESHOLD

KEEP_CHOICES = ("all", "largest", "centre")


def components(alpha: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, list[int]]:
    """Connected subjects (8-connected, alpha >= ``threshold``): label map [H,W] (0 = none) and sizes."""
    import numpy as np
    from scipy import ndimage

    labels, n = ndimage.label((alpha >= threshold).cpu().numpy(), structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].tolist()
    return torch.from_numpy(labels), sizes


def keep_subject(alpha: torch.Tensor, which: str = "largest", reach: int = 0) -> torch.Tensor:
    """``alpha`` with only one subject left: the largest, or the one nearest the frame centre.

    Every pixel goes to its nearest subject (so soft edges and hair stay with their own
    subject); pixels nearer another subject become transparent. ``"all"`` returns ``alpha``."""
    if which not in KEEP_CHOICES:
        raise ValueError(f"keep '{which}' unknown; expected one of {', '.join(KEEP_CHOICES)}")
    if which == "all":
        return alpha
    import numpy as np
    from scipy import ndimage

    labels, sizes = components(alpha)
    if len(sizes) <= 1:
        return alpha
    if which == "largest":
        keep = int(np.argmax(sizes)) + 1
    else:
        h, w = alpha.shape
        centres = ndimage.center_of_mass(np.ones_like(labels), labels.numpy(), range(1, len(sizes) + 1))
        d = [((cy - h / 2) / h) ** 2 + ((cx - w / 2) / w) ** 2 for cy, cx in centres]
        big = [i for i, s in enumerate(sizes) if s >= 0.05 * max(sizes)]  # specks are not "the centre one"
        keep = min(big, key=lambda i: d[i]) + 1
    _, idx = ndimage.distance_transform_edt(labels.numpy() == 0, return_indices=True)
    nearest = labels.numpy()[idx[0], idx[1]]
    return alpha * torch.from_numpy(nearest == keep).to(alpha.dtype)


SMALL_SIDE = 512


def small_copy(alpha: torch.Tensor, side: int = SMALL_SIDE) -> torch.Tensor:
    """``alpha`` [H,W] shrunk (area average, aspect kept) to at most ``side`` px: the copy the doubt
    cues and the review page's thumbnails are made from. A small mask is returned as it is."""
    a = alpha.float()
    if max(a.shape) > side:
        import torch.nn.functional as F

        s = side / max(a.shape)
        a = F.interpolate(a[None, None], size=(max(1, round(a.shape[0] * s)), max(1, round(a.shape[1] * s))),
                          mode="area")[0, 0]
    return a


UNSTABLE_IOU = 0.7  # below this IoU two versions of a mask disagree on what the subject is (as quality's "best")


def doubt(alpha: torch.Tensor, agreement: float = 1.0) -> tuple[float, dict[str, float]]:
    """(score 0..1, cues) for one result's mask ``alpha`` [H,W] (1 = subject). ``agreement``: the
    least IoU between the network's looks at the frame when it took several (``FrameResult.agreement``)."""
    a = small_copy(alpha)  # the cues are about shapes, not pixels: a 512 px copy is enough and cheap
    subject = a >= SUBJECT_THRESHOLD
    n_sub = int(subject.sum())
    share = float((a >= 0.5).float().mean())
    cues: dict[str, float] = {}
    mid = float(((a > SUBJECT_THRESHOLD) & (a < 0.9)).sum()) / max(n_sub, 1)
    cues["soft"] = min(1.0, mid / 0.4)
    border = torch.cat([a[0], a[-1], a[:, 0], a[:, -1]])
    cues["edge"] = min(1.0, float((border >= 0.5).float().mean()) * 3)
    cues["tiny"] = 1.0 if share == 0 else max(0.0, min(1.0, (0.03 - share) / 0.025))
    cues["huge"] = max(0.0, min(1.0, (share - 0.8) / 0.15))
    # a mask that changes under a small perturbation: the threshold moved by 0.2 either way (free),
    # or another look of the network (quality "best": the mirrored look), whichever moves it more
    lo, hi = int((a >= 0.3).sum()), int((a >= 0.7).sum())
    stable = min(1.0 if lo == 0 else hi / lo, agreement)
    cues["unstable"] = max(0.0, min(1.0, (1.0 - stable) / (1.0 - UNSTABLE_IOU)))
    _, sizes = components(a)
    if sizes:
        big = sorted(sizes, reverse=True)
        others = sum(1 for s in big[1:] if s >= 0.15 * big[0])
        cues["several"] = min(1.0, others / 2)
    else:
        cues["several"] = 0.0
    keep = 1.0
    for v in cues.values():
        keep *= 1.0 - v
    return 1.0 - keep, {k: round(v, 3) for k, v in cues.items()}
