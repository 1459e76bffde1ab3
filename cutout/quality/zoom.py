"""The zoom pass: a second look at each subject's box, so that small subjects get the whole 320 px.

Boxes come from the first look's small map (cheap, any photo size): the connected regions of
map > 0.5, the small specks dropped, each box grown by a margin, overlapping boxes joined.
When the boxes together still cover most of the frame a second look would see the same
pixels, so there is no zoom then.
"""

from __future__ import annotations

import numpy as np
import torch

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 in full-resolution pixels, end exclusive


def subject_boxes(small_map: torch.Tensor, height: int, width: int, margin: float, max_area: float,
                  max_boxes: int = 3, min_share: float = 0.15, min_side: int = 16) -> list[Box]:
    """Boxes (full-resolution pixels) around the subjects seen in ``small_map`` [1,1,s,s].

    ``margin``: each side grows by this share of the box's size. ``min_share``: regions smaller
    than this share of the largest one are specks, not subjects. At most ``max_boxes`` boxes
    (the largest regions); none when their area together exceeds ``max_area`` of the frame,
    when nothing is found, or when a box would be under ``min_side`` pixels.
    """
    from scipy import ndimage  # runtime requirement; imported on use

    m = small_map[0, 0].numpy() > 0.5
    labels, n = ndimage.label(m)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    keep = [i + 1 for i in np.argsort(-sizes)[:max_boxes] if sizes[i] >= min_share * sizes.max()]
    sh, sw = m.shape
    boxes = []
    objects = ndimage.find_objects(labels)
    for k in keep:
        ys, xs = objects[k - 1]
        y0, y1, x0, x1 = ys.start / sh, ys.stop / sh, xs.start / sw, xs.stop / sw
        dy, dx = (y1 - y0) * margin, (x1 - x0) * margin
        boxes.append([max(0.0, y0 - dy), max(0.0, x0 - dx), min(1.0, y1 + dy), min(1.0, x1 + dx)])
    boxes = _join_overlapping(boxes)
    if sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > max_area:
        return []
    out = [(int(b[0] * height), int(b[1] * width), int(np.ceil(b[2] * height)), int(np.ceil(b[3] * width)))
           for b in boxes]
    if any(y1 - y0 < min_side or x1 - x0 < min_side for y0, x0, y1, x1 in out):
        return []
    return out


def _join_overlapping(boxes: list[list[float]]) -> list[list[float]]:
    """Replace any two overlapping boxes by the box around both, until none overlap."""
    boxes = [list(b) for b in boxes]
    joined = True
    while joined:
        joined = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    joined = True
                    break
            if joined:
                break
    return boxes


def merge_box(mask: torch.Tensor, box_mask: torch.Tensor, box: Box, weight: float) -> None:
    """Blend the zoom look's mask into ``mask`` (in place) inside ``box``: ``weight`` 1 replaces,
    0.5 averages the two looks."""
    y0, x0, y1, x1 = box
    region = mask[y0:y1, x0:x1]
    region.mul_(1.0 - weight).add_(box_mask, alpha=weight)
