"""Find the pack's edge refinement, if this checkout has it (lazy: the refine work lands separately).

The bench scripts drive refinement through the Mask Refine node (``CutoutMaskRefine`` in the
pack's ``NODE_CLASS_MAPPINGS``) — the code path users run — with the node's own defaults for
every input not given. When the node is absent they report "skipped: not available".
"""

from __future__ import annotations

from _common import load_pack

NODE_ID = "CutoutMaskRefine"


def parse_options(text: str) -> dict:
    """``"radius=8,eps=0.001,method=guided filter"`` -> dict with ints/floats/bools converted."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SystemExit(f"refine option '{part}' is not key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        low = v.lower()
        if low in ("true", "false"):
            out[k] = low == "true"
            continue
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                pass
        else:
            out[k] = v
    return out


class Refiner:
    """Calls the Mask Refine node with its defaults plus ``options`` (mask [B,H,W], image [B,H,W,3])."""

    def __init__(self, options: dict):
        import cutout as pack
        cls = pack.NODE_CLASS_MAPPINGS[NODE_ID]
        self.node = cls()
        self.fn = getattr(self.node, cls.FUNCTION)
        spec = cls.INPUT_TYPES()
        self.defaults = {}
        self.mask_input = self.image_input = None
        for section in ("required", "optional"):
            for name, decl in spec.get(section, {}).items():
                kind = decl[0]
                extra = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
                if kind == "MASK" and self.mask_input is None:
                    self.mask_input = name
                elif kind == "IMAGE" and self.image_input is None:
                    self.image_input = name
                elif "default" in extra:
                    self.defaults[name] = extra["default"]
                elif isinstance(kind, (list, tuple)) and kind:
                    self.defaults[name] = kind[0]
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise SystemExit(f"{NODE_ID} has no input(s) {sorted(unknown)}; it has {sorted(self.defaults)}")
        self.options = options

    def __call__(self, mask, image):
        kwargs = dict(self.defaults, **self.options)
        kwargs[self.mask_input] = mask
        if self.image_input:
            kwargs[self.image_input] = image
        return self.fn(**kwargs)[0]


def get_refiner(options: dict | None = None):
    """(Refiner, None) or (None, reason)."""
    import cutout as pack
    if NODE_ID not in getattr(pack, "NODE_CLASS_MAPPINGS", {}):
        return None, f"skipped: not available ({NODE_ID} is not in this checkout)"
    return Refiner(options or {}), None
