"""What a cut-out is asked to do: frozen, typed options and the ONE parser per concept.

Every front door (the nodes, ``cli.py``, the HTTP API, Save Image Folder) turns its own inputs
into a ``CutoutOptions`` with these parsers, then hands it to ``pipeline``. Nothing below the
front doors reads a flag, a query string or a widget value.

* ``parse_color``      — colour names, ``#RRGGBB``, ``#RGB``, ``rgb(…)``, ``r,g,b`` (``imaging.composite``);
* ``parse_background`` — ``transparent`` / a colour / ``gradient:C1:C2[:ANGLE]`` / ``blur`` / ``checkerboard``;
* ``parse_refine_mode`` — ``off``/``none``, ``guided``/``guided filter``, ``matting``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .imaging.clear import DEFAULT_CLEAR_FILL, check_clear_fill
from .imaging.composite import FIT_MODES, parse_color
from .imaging.refine import GUIDED_DEFAULTS
from .models.catalog import DEFAULT_MODEL
from .quality import CHOICES as QUALITIES, DEFAULT_QUALITY

# ----------------------------------------------------------------------------- refine mode

EDGE_MODES = ("off", "guided filter", "matting")  # Mask Refine's names (its dropdown)
REFINE_MODE_NAMES = {  # every spelling a front door offers -> Mask Refine's name
    "off": "off", "none": "off",
    "guided": "guided filter", "guided filter": "guided filter", "guided_filter": "guided filter",
    "matting": "matting",
}


def parse_refine_mode(text: str) -> str:
    """Any front door's name for an edge refinement mode -> Mask Refine's ('off' / 'guided filter' / 'matting')."""
    key = str(text or "").strip().lower()
    if key not in REFINE_MODE_NAMES:
        raise ValueError(f"edge refinement '{text}' unknown; expected off, guided or matting")
    return REFINE_MODE_NAMES[key]


@dataclass(frozen=True)
class RefineOptions:
    """Mask Refine's settings (``imaging.refine_chain.refine_masks``, in its fixed order); all off by default."""

    black_point: float = 0.0
    white_point: float = 1.0
    threshold: float = 0.0
    fill_holes: bool = False
    remove_islands: float = 0.0
    grow: int = 0
    edge_refinement: str = "off"
    guided_radius: int = GUIDED_DEFAULTS["radius"]
    guided_eps: float = GUIDED_DEFAULTS["eps"]
    guided_size: int = GUIDED_DEFAULTS["work_size"]
    matting_band: int = 10
    matting_max_megapixels: float = 1.0
    feather: float = 0.0
    temporal: float = 0.0
    temporal_mode: str = "colour"
    invert: bool = False

    def __post_init__(self):
        object.__setattr__(self, "edge_refinement", parse_refine_mode(self.edge_refinement))
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold}: expected 0..1")
        if not all(math.isfinite(v) and v >= 0 for v in (self.remove_islands, self.feather)):  # NaN passes '< 0'
            raise ValueError("remove_islands and feather must be finite numbers >= 0")

    @property
    def active(self) -> bool:
        """True when any operation is switched on (otherwise the mask is left as it is)."""
        return self != RefineOptions()

    def kwargs(self) -> dict:
        """The keyword arguments of ``refine_masks``."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- background

BACKGROUND_KINDS = ("transparent", "color", "gradient", "image", "blur", "checkerboard")
TRANSPARENT_NAMES = ("transparent", "none", "alpha")
BACKGROUND_FORMS = ("transparent, a colour (white, #RRGGBB, r,g,b …), gradient:COLOUR1:COLOUR2[:ANGLE], "
                    "blur or checkerboard")


@dataclass(frozen=True)
class Background:
    """What goes behind the subject. Colours are (r, g, b) floats 0..1.

    ``opacity`` (colour only): lay the colour UNDER the cut-out as a translucent layer and keep
    an alpha channel (rembg's ``bgc``); None = an opaque RGB composite.
    ``image`` (kind 'image'): an IMAGE ``[1|B,h,w,3]`` sized to the photo with ``fit``.
    """

    kind: str = "transparent"
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)  # gradient end; padding of fit = contain
    angle: float = 90.0  # gradient direction, degrees: 0 = left → right, 90 = top → bottom
    fit: str = "cover"
    blur_radius: float = 24.0
    opacity: float | None = None
    image: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in BACKGROUND_KINDS:
            raise ValueError(f"background '{self.kind}' unknown; expected one of {', '.join(BACKGROUND_KINDS)}")
        if self.fit not in FIT_MODES:
            raise ValueError(f"fit '{self.fit}' unknown; expected one of {', '.join(FIT_MODES)}")
        if self.kind == "image" and self.image is None:
            raise ValueError("background 'image' needs the image")
        if self.opacity is not None and (self.kind != "color" or not 0.0 <= self.opacity <= 1.0):
            raise ValueError("opacity is for a colour background, 0..1")

    @property
    def transparent(self) -> bool:
        return self.kind == "transparent"

    @property
    def keeps_alpha(self) -> bool:
        """True when the result has an alpha channel (transparent, or a translucent colour layer)."""
        return self.kind == "transparent" or self.opacity is not None

    def to_dict(self) -> dict:
        """Plain values (for Ray rows); not for 'image' backgrounds."""
        if self.kind == "image":
            raise ValueError("an image background cannot be sent as plain values")
        d = dataclasses.asdict(self)
        d.pop("image")
        return d


TRANSPARENT = Background()


def parse_background(text: str) -> Background:
    """THE background spec of the CLI, the API and Save Image Folder.

    ``transparent`` (also none, alpha), ``blur``, ``checkerboard``, a colour (names, ``#RRGGBB``,
    ``#RGB``, ``rgb(…)``, ``r,g,b``) or ``gradient:COLOUR1:COLOUR2[:ANGLE]``. Raises ValueError
    naming what was not understood and the accepted forms.
    """
    raw = str(text if text is not None else "").strip()
    low = raw.lower()
    if low in TRANSPARENT_NAMES:
        return TRANSPARENT
    if low in ("blur", "checkerboard"):
        return Background(low)
    try:
        if low.startswith("gradient"):
            parts = raw.split(":")
            if len(parts) not in (3, 4) or parts[0].strip().lower() != "gradient":
                raise ValueError("expected gradient:COLOUR1:COLOUR2[:ANGLE]")
            angle = float(parts[3]) if len(parts) == 4 else 90.0
            return Background("gradient", color=parse_color(parts[1]), color2=parse_color(parts[2]), angle=angle)
        return Background("color", color=parse_color(raw))
    except ValueError as e:  # a gradient says which part failed; a lone word repeats no colour list
        why = f": {e}" if low.startswith("gradient") else " is not understood"
        raise ValueError(f"background '{raw}'{why}; expected {BACKGROUND_FORMS}") from None


# ----------------------------------------------------------------------------- the cut-out

FORMS = ("rgba", "composite", "mask")


@dataclass(frozen=True)
class CutoutOptions:
    """Everything one cut-out needs, the same for every front door (defaults = the nodes').

    Steps, in the pipeline's order: network (``model``, ``device``, ``quality``, ``refine_edges``)
    → ``post_process`` (rembg's ppm) → ``refine`` (Mask Refine) → the file's own alpha →
    ``decontaminate`` → ``background`` (a transparent result holds ``clear_fill`` under alpha 0,
    ``imaging.clear``) → pixels (``mask_only``: the mask instead).
    """

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    quality: str = DEFAULT_QUALITY
    refine_edges: bool = False
    post_process: bool = False
    refine: RefineOptions = RefineOptions()
    decontaminate: bool = True
    background: Background = TRANSPARENT
    clear_fill: str = DEFAULT_CLEAR_FILL
    mask_only: bool = False

    def __post_init__(self):
        check_clear_fill(self.clear_fill)
        if self.quality not in QUALITIES:
            raise ValueError(f"quality '{self.quality}' unknown; expected one of {', '.join(QUALITIES)}")

    @property
    def form(self) -> str:
        """'mask', 'rgba' (straight alpha) or 'composite' (RGB on the background)."""
        if self.mask_only:
            return "mask"
        return "rgba" if self.background.keeps_alpha else "composite"

    def replace(self, **changes) -> "CutoutOptions":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain values (Ray rows carry no pack class); ``from_dict`` is the inverse."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("refine", "background")},
                "refine": self.refine.kwargs(), "background": self.background.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "CutoutOptions":
        d = dict(d)
        bg = dict(d.pop("background"))
        for k in ("color", "color2"):
            bg[k] = tuple(bg[k])
        refine = RefineOptions(**dict(d.pop("refine", {})))
        return cls(**d, refine=refine, background=Background(**bg))


def flattened_for_jpeg(opts: CutoutOptions, jpeg_background: Background) -> CutoutOptions:
    """JPEG has no alpha: a result that would keep one is put on ``jpeg_background`` instead."""
    if opts.mask_only or not opts.background.keeps_alpha:
        return opts
    if jpeg_background.keeps_alpha:
        raise ValueError("jpeg_background cannot be transparent (JPEG has no alpha); expected a colour")
    return opts.replace(background=jpeg_background)
