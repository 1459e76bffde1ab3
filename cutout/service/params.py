"""The request parameters of ``/cutout/api/remove`` and ``/cutout/api/batch``: one table.

The parser, the error messages and the OpenAPI description are all made from ``PARAMS``, so
they cannot drift apart. Names follow rembg's server (``rembg s``) where they mean the same
thing; the pack's own options have long names. ``cutout_options`` turns a request into the
pipeline's ``CutoutOptions`` with the pack's shared parsers (``options``); where the API's
defaults differ from the nodes' (rembg's meaning of its parameters) that is ``API_DEFAULTS``,
the one table (docs/api.md shows it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..codec import EncodeSettings
from ..options import Background, CutoutOptions, RefineOptions, parse_background, parse_refine_mode
from ..quality import CHOICES as QUALITY_CHOICES, auto_summary
from .errors import ApiError

log = logging.getLogger("comfyui_cutout")

# The API's defaults where they differ from the nodes' (CutoutOptions' defaults), and why:
API_DEFAULTS = {
    "decontaminate": False,  # rembg returns the photo's own colours unless asked (dc=true / decontaminate=true)
}
# Encoding for HTTP: WEBP at a higher effort than the folder job's (which favours speed); JPEG 4:2:0 as Pillow's default.
API_ENCODE = EncodeSettings(jpeg_quality=92, jpeg_subsampling=2, webp_quality=80, webp_method=4)

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}

REFINE_CHOICES = ("none", "guided", "matting")
FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # bool | int | str | choice | color
    default: object
    description: str
    rembg: bool = False  # same name and meaning as rembg's server
    choices: tuple = ()
    minimum: int | None = None
    maximum: int | None = None


PARAMS: tuple[Param, ...] = (
    Param("model", "str", None, "Segmentation model (see GET /cutout/api/models). Default: the pack's default "
          "model (u2netp, ships with the pack).", rembg=True),
    Param("om", "bool", False, "Only mask: return the subject mask as a grey PNG (255 = subject) instead of "
          "the cut-out.", rembg=True),
    Param("ppm", "bool", False, "Post-process mask as rembg does: a 3x3 opening, a Gaussian blur (sigma 2) and "
          "a threshold at 0.5, giving a hard, smooth edge.", rembg=True),
    Param("a", "bool", False, "Alpha matting (rembg's name): the same as refine=matting.", rembg=True),
    Param("af", "int", 240, "Alpha matting foreground threshold (0..255): mask values above it are sure "
          "foreground in the trimap.", rembg=True, minimum=0, maximum=255),
    Param("ab", "int", 10, "Alpha matting background threshold (0..255): mask values below it are sure "
          "background in the trimap.", rembg=True, minimum=0, maximum=255),
    Param("ae", "int", 10, "Alpha matting erode size in pixels (shrinks the sure regions of the trimap).",
          rembg=True, minimum=0, maximum=255),
    Param("bgc", "color", None, "Background colour 'r,g,b,a' (0..255 each), alpha-composited under the cut-out "
          "as rembg does (the PNG keeps an alpha channel; a = 255 makes it opaque).", rembg=True),
    Param("dc", "bool", False, "Decontaminate edges (rembg's name): the same as decontaminate=true.", rembg=True),
    Param("quality", "choice", "auto", f"How hard the network looks: auto ({auto_summary()}), fast (one look) or best "
          "(the photo and its mirror image merged; about 2x the time).",
          choices=QUALITY_CHOICES),
    Param("refine", "choice", "none", "Edge refinement of the mask at full resolution: none, guided (fast guided "
          "filter against the photo) or matting (closed-form matting on a trimap; slow).", choices=REFINE_CHOICES),
    Param("decontaminate", "bool", API_DEFAULTS["decontaminate"], "Estimate the true foreground colour in semi-transparent edge pixels, "
          "so no fringe of the old background shows on a new one."),
    Param("background", "str", "transparent", "What goes behind the subject: 'transparent' (RGBA PNG), a colour "
          "('#rrggbb', a CSS name such as 'white', or 'r,g,b'), 'gradient:COLOUR1:COLOUR2[:ANGLE]', 'blur' (the "
          "photo, blurred) or 'checkerboard'; anything but transparent gives an opaque RGB image."),
    Param("clear_fill", "choice", "black", "What a transparent result stores under alpha = 0 (invisible, but "
          "what a trainer loading the RGB alone sees): black (as rembg), bleed (the subject's edge colours "
          "spread outward) or photo (the photo's own pixels, for kohya's --alpha_mask masked loss).",
          choices=("black", "bleed", "photo")),
    Param("format", "choice", "png", "Output format: png, webp (lossless, keeps alpha) or jpeg (needs an opaque "
          "background: background=<colour> or bgc with a = 255).", choices=tuple(FORMATS)),
)

BY_NAME = {p.name: p for p in PARAMS}
VALID = tuple(BY_NAME)
# rembg's server has these; they have no counterpart here and are refused by name.
UNSUPPORTED = {
    "vm": "ViTMatte refinement is not available in this pack; use refine=guided or refine=matting",
    "extras": "model extras are not accepted over HTTP",
    "url": "fetching images from URLs is not offered (it would let callers reach the network through "
           "ComfyUI); send the image itself",
}


@dataclass
class Options:
    model: str | None = None
    om: bool = False
    ppm: bool = False
    refine: str = "none"
    quality: str = "auto"
    af: int = 240
    ab: int = 10
    ae: int = 10
    bgc: tuple[int, int, int, int] | None = None
    decontaminate: bool = API_DEFAULTS["decontaminate"]
    background: str = "transparent"
    clear_fill: str = "black"
    format: str = "png"
    given: dict = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return "image/png" if self.om and self.format == "png" else FORMATS[self.format]

    @property
    def extension(self) -> str:
        return "jpg" if self.format in ("jpeg", "jpg") else self.format


def _bool(p: Param, raw: str) -> bool:
    v = raw.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise ApiError(400, "bad_parameter", f"parameter '{p.name}' is '{raw}'; expected true or false (1/0, yes/no)",
                   parameter=p.name)


def _int(p: Param, raw: str) -> int:
    try:
        v = int(raw.strip())
    except ValueError:
        raise ApiError(400, "bad_parameter", f"parameter '{p.name}' is '{raw}'; expected an integer",
                       parameter=p.name) from None
    if (p.minimum is not None and v < p.minimum) or (p.maximum is not None and v > p.maximum):
        raise ApiError(400, "bad_parameter", f"parameter '{p.name}' is {v}; expected {p.minimum}..{p.maximum}",
                       parameter=p.name)
    return v


def parse_rgba(raw: str, name: str = "bgc") -> tuple[int, int, int, int]:
    parts = [s.strip() for s in raw.split(",")]
    try:
        values = [int(s) for s in parts]
    except ValueError:
        values = []
    if len(values) == 3:
        values.append(255)
    if len(values) != 4 or any(v < 0 or v > 255 for v in values):
        raise ApiError(400, "bad_parameter", f"parameter '{name}' is '{raw}'; expected 'r,g,b,a' with four "
                       "integers 0..255 (e.g. 255,255,255,255)", parameter=name)
    return tuple(values)  # type: ignore[return-value]


def parse(raw: dict[str, str]) -> Options:
    """Validate the query/form parameters of a request into ``Options`` (ApiError 400 on any problem)."""
    unknown = [k for k in raw if k not in BY_NAME]
    for k in unknown:
        if k in UNSUPPORTED:
            raise ApiError(400, "unsupported_parameter", f"parameter '{k}' is not supported: {UNSUPPORTED[k]}",
                           parameter=k, valid=list(VALID))
    if unknown:
        raise ApiError(400, "unknown_parameter",
                       f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}; "
                       f"valid parameters are: {', '.join(VALID)}", parameters=unknown, valid=list(VALID))
    o = Options(given=dict(raw))
    aliases: dict[str, bool] = {}
    for name, value in raw.items():
        p = BY_NAME[name]
        if p.kind == "bool" and name in ("a", "dc"):
            aliases[name] = _bool(p, value)
        elif p.kind == "bool":
            setattr(o, name, _bool(p, value))
        elif p.kind == "int":
            setattr(o, name, _int(p, value))
        elif p.kind == "choice":
            v = value.strip().lower()
            if v not in p.choices:
                raise ApiError(400, "bad_parameter", f"parameter '{name}' is '{value}'; expected one of: "
                               f"{', '.join(p.choices)}", parameter=name, valid=list(p.choices))
            setattr(o, name, v)
        elif p.kind == "color":
            o.bgc = parse_rgba(value, name)
        else:
            v = value.strip()
            if not v:
                raise ApiError(400, "bad_parameter", f"parameter '{name}' is empty", parameter=name)
            if name == "background":
                try:
                    parse_background(v)
                except ValueError as e:
                    raise ApiError(400, "bad_parameter", f"parameter 'background' is '{v}': {e}",
                                   parameter="background") from None
            setattr(o, name, v)
    if aliases.get("a"):
        if o.refine not in ("none", "matting"):
            raise ApiError(400, "conflicting_parameters", f"a=true means refine=matting, but refine={o.refine} "
                           "was given too; give one of them", parameters=["a", "refine"])
        o.refine = "matting"
    if aliases.get("dc"):
        o.decontaminate = True
    if o.format == "jpg":
        o.format = "jpeg"
    if o.bgc is not None and o.background.lower() != "transparent":
        raise ApiError(400, "conflicting_parameters", "give either bgc (rembg's 'r,g,b,a') or background, not both",
                       parameters=["bgc", "background"])
    if o.om and (o.bgc is not None or o.background.lower() != "transparent" or o.decontaminate):
        raise ApiError(400, "conflicting_parameters", "om=true returns the mask only; bgc, background and "
                       "decontaminate do not apply to it", parameters=["om"])
    if o.format == "jpeg" and not o.om:
        opaque = (o.bgc is not None and o.bgc[3] == 255) or o.background.lower() != "transparent"
        if not opaque:
            raise ApiError(400, "bad_parameter", "format=jpeg has no alpha channel: give an opaque background "
                           "(background=white, or bgc=r,g,b,255), or use png/webp", parameter="format")
    return o


def cutout_options(o: Options, model: str, device: str) -> CutoutOptions:
    """A parsed request as the pipeline's options (the same parsers as the CLI and the nodes)."""
    if o.refine == "matting" and (o.ab, o.af) != (10, 240):
        log.warning("Cutout API: ab/af are not used: Mask Refine's matting builds its trimap at 0.05 / 0.95")
    refine = RefineOptions(edge_refinement=parse_refine_mode(o.refine), matting_band=o.ae)
    if o.bgc is not None:  # rembg: the colour alpha-composited under the cut-out, alpha channel kept
        r, g, b, a = o.bgc
        background = Background("color", color=(r / 255, g / 255, b / 255), opacity=a / 255)
    else:
        background = parse_background(o.background)
    return CutoutOptions(model=model, device=device, post_process=o.ppm, refine=refine,
                         decontaminate=o.decontaminate, background=background, clear_fill=o.clear_fill,
                         mask_only=o.om, quality=o.quality)
