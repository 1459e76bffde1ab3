"""What the review page's thumbnails cost per photo, side by side (CPU seconds, interleaved).

    python -m bench.review_cost [--photos 8] [--repeats 5]

For each photo (eval photos, 12 MP): the thumbnails as the page makes them now (``review.thumbnails``
from the network's small view and the doubt cues' 512 px mask copy, plus their JSON line for the
spool) vs the way they were made before (Pillow reduce + thumbnail of the full-size photo and of the
full-size RGBA output, JPEG + PNG, kept here as the reference), and, for scale, the PNG encode of the
same output (``codec.encode_image``, what the job pays per photo anyway). Prints CPU ms per photo.
"""

from __future__ import annotations

import argparse
import base64
import io
import json

from bench._common import DEFAULT_EVAL, interleaved


def _before(pixels, side: int = 256) -> str:
    """The old thumbnail: from the full-size pixels (RGB -> JPEG, RGBA -> PNG)."""
    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(pixels))
    f = max(1, max(im.size) // side)
    if f > 1:
        im = im.reduce(f)
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80) if im.mode == "RGB" else im.save(buf, "PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def main(argv=None) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from bench.metrics import read_manifest
    from cutout.codec import EncodeSettings, encode_image
    from cutout.dataset.review import square_view_u8, thumbnails
    from cutout.imaging.model_io import shrink_for_model
    from cutout.imaging.subjects import small_copy
    from cutout.models.session import get_session
    from cutout.pipeline import cut_out_8bit
    from cutout.options import CutoutOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    session = get_session("u2netp")
    cases = []
    for pair in read_manifest(DEFAULT_EVAL)[: a.photos]:
        with Image.open(pair.image) as im:
            im = im.convert("RGB")
            s = (12e6 / (im.width * im.height)) ** 0.5
            rgb = np.asarray(im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC))
        pixels, alpha = cut_out_8bit(session, rgb, None, CutoutOptions())
        frame = torch.from_numpy(rgb).float().div_(255.0)
        small = shrink_for_model(frame[None], session.family.size)  # what the network saw (exists in the job)
        mask = small_copy(alpha)  # exists in the job (the doubt cues)
        cases.append((rgb, pixels, small, mask))
    settings = EncodeSettings()

    def now():
        for rgb, _px, small, mask in cases:
            t = thumbnails(square_view_u8(small), mask.numpy(), rgb.shape[:2])
            json.dumps({"thumbs": t})

    def before():
        for rgb, px, _s, _m in cases:
            json.dumps({"thumbs": [_before(rgb), _before(px)]})

    def png():
        for _rgb, px, _s, _m in cases:
            encode_image(px, "png", settings)

    t = interleaved({"now": now, "before": before, "png encode": png}, repeats=a.repeats)
    n = len(cases)
    ms = {k: 1000 * v["cpu_median_s"] / n for k, v in t.items()}
    print(f"{n} photos at 12 MP, CPU ms per photo (median of {a.repeats} interleaved rounds):")
    for k, v in ms.items():
        print(f"  {k:<12} {v:7.1f}")
    print(f"  thumbnails now / before: {ms['now'] / ms['before']:.3f}x; now / PNG encode: {ms['now'] / ms['png encode']:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
