"""The model catalog: one table of data over a few model families.

A family knows how its networks want their input (square size, mean/std) and what their
raw output means (already a probability, or logits). A catalog entry only adds where the
weights come from and how to recognise them (file name, URL, md5). Adding a model that
belongs to an existing family is one line in ``CATALOG``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"


@dataclass(frozen=True)
class Family:
    """How a network family is fed and read."""

    name: str
    size: int  # the square input the network was trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    logits: bool  # True when the first output needs a sigmoid


U2NET = Family("u2net", 320, IMAGENET_MEAN, IMAGENET_STD, logits=False)
ISNET = Family("isnet", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), logits=False)
ISNET_ANIME = Family("isnet-anime", 1024, IMAGENET_MEAN, (1.0, 1.0, 1.0), logits=False)
BIREFNET = Family("birefnet", 1024, IMAGENET_MEAN, IMAGENET_STD, logits=True)
BRIA = Family("bria-rmbg", 1024, IMAGENET_MEAN, IMAGENET_STD, logits=False)  # RMBG-2.0: BiRefNet-based, output already 0..1
BEN = Family("ben", 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), logits=False)  # BEN2 (rembg's ben_custom)

# Licences of the weights (the code that runs them is the pack's). Non-commercial ones are named in the
# dropdown's tooltip and the README.
APACHE, MIT = "Apache-2.0", "MIT"
NON_COMMERCIAL = "CC BY-NC 4.0 (non-commercial only; BRIA sells a commercial licence)"


@dataclass(frozen=True)
class Recipe:
    """How a variant is made from its base model's float weights (see ``models/quantize.py``)."""

    name: str  # tag in the variant's file name, e.g. "int8"
    ranges: str  # file in models/quant/ with the calibrated activation ranges (computed offline)
    per_channel: bool = True  # int8 weights with one scale per output channel
    float_sensitive: int = 0  # keep the N Convs whose input suffers most from uint8 in float
    exclude_last_convs: int = 0  # keep the last N Convs (side outputs + fusion) in float
    exclude_first_convs: int = 0
    exclude_ops: tuple[str, ...] = ()  # op types kept in float everywhere (e.g. the final Sigmoid)
    exclude_nodes: tuple[str, ...] = ()  # node names kept in float
    extra: tuple[tuple[str, object], ...] = ()  # extra_options for onnxruntime's quantizer

    @property
    def digest(self) -> str:
        """Six hex digits of everything that shapes the build: a changed recipe is a new cache file."""
        import hashlib

        return hashlib.md5(repr(self).encode()).hexdigest()[:6]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the dropdown shows, and the file stem rembg uses in ~/.u2net
    family: Family
    url: str
    md5: str
    size_mb: float
    description: str
    embedded: bool = False  # ships inside the pack (works offline)
    derived_from: str | None = None  # a variant: built locally from this catalog model
    recipe: Recipe | None = None  # how the variant is built
    passes_bar: bool = False  # variant met the quality bar on shared/eval/dev (docs/models.md)
    sha256: str = ""  # when the publisher gives a sha256 instead of an md5 (bria-rmbg)
    licence: str = APACHE  # of the weights
    found_only: bool = False  # no URL, no published hash: used when another tool made it (rembg's fp16 build)
    auto_quality: str = "fast"  # what quality "auto" runs: the cheapest setting that met rembg's bar (docs/quality.md)
    look_merge: str = "logodds"  # how `best` merges its looks (quality/passes.MERGES; docs/quality.md)

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, hex digest) the file must have; ("", "") when nothing is published."""
        if self.md5:
            return "md5", self.md5
        if self.sha256:
            return "sha256", self.sha256
        return "", ""

    @property
    def non_commercial(self) -> bool:
        return "non-commercial" in self.licence

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def is_variant(self) -> bool:
        return self.derived_from is not None


def variant(base: ModelSpec, recipe: Recipe, description: str, passes_bar: bool) -> ModelSpec:
    """A catalog row for a variant built from ``base``: same family, ``auto`` quality and merge, no URL, no fixed md5."""
    return ModelSpec(f"{base.name}-{recipe.name}", base.family, "", "", 0.0, description,
                     derived_from=base.name, recipe=recipe, passes_bar=passes_bar, auto_quality=base.auto_quality,
                     look_merge=base.look_merge)


CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("u2netp", U2NET, _RELEASES + "u2netp.onnx", "8e83ca70e441ab06c318d82300c84806", 4.6,
                  "small U²-Net, general objects; fast; ships with the pack", embedded=True,
                  look_merge="agree"),
        ModelSpec("u2net", U2NET, _RELEASES + "u2net.onnx", "60024c5c889badc19c04ad937298a77b", 176.0,
                  "U²-Net, general objects; better edges than u2netp", auto_quality="best"),
        ModelSpec("u2net_human_seg", U2NET, _RELEASES + "u2net_human_seg.onnx",
                  "c09ddc2e0104f800e3e1bb4652583d1f", 176.0, "U²-Net trained on people"),
        ModelSpec("silueta", U2NET, _RELEASES + "silueta.onnx", "55e59e0d8062d2f5d013f4725ee84782", 43.0,
                  "U²-Net pruned to 43 MB, general objects"),
        ModelSpec("isnet-general-use", ISNET, _RELEASES + "isnet-general-use.onnx",
                  "fc16ebd8b0c10d971d3513d564d01e29", 179.0, "IS-Net (DIS), general objects, 1024 px"),
        ModelSpec("isnet-anime", ISNET_ANIME, _RELEASES + "isnet-anime.onnx",
                  "6f184e756bb3bd901c8849220a83e38e", 176.0, "IS-Net for anime characters, 1024 px"),
        ModelSpec("birefnet-general", BIREFNET, _RELEASES + "BiRefNet-general-epoch_244.onnx",
                  "7a35a0141cbbc80de11d9c9a28f52697", 973.0, "BiRefNet, general objects, best edges, slow on CPU",
                  licence=MIT),
        ModelSpec("birefnet-general-lite", BIREFNET, _RELEASES + "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
                  "4fab47adc4ff364be1713e97b7e66334", 214.0, "BiRefNet with a Swin-tiny backbone", licence=MIT),
        ModelSpec("birefnet-portrait", BIREFNET, _RELEASES + "BiRefNet-portrait-epoch_150.onnx",
                  "c3a64a6abf20250d090cd055f12a3b67", 973.0, "BiRefNet trained on portraits (people)", licence=MIT),
        ModelSpec("birefnet-dis", BIREFNET, _RELEASES + "BiRefNet-DIS-epoch_590.onnx",
                  "2d4d44102b446f33a4ebb2e56c051f2b", 973.0, "BiRefNet for fine structures (DIS5K)", licence=MIT),
        ModelSpec("birefnet-hrsod", BIREFNET, _RELEASES + "BiRefNet-HRSOD_DHU-epoch_115.onnx",
                  "c017ade5de8a50ff0fd74d790d268dda", 973.0, "BiRefNet for high-resolution salient objects",
                  licence=MIT),
        ModelSpec("birefnet-cod", BIREFNET, _RELEASES + "BiRefNet-COD-epoch_125.onnx",
                  "f6d0d21ca89d287f17e7afe9f5fd3b45", 973.0, "BiRefNet for camouflaged objects", licence=MIT),
        ModelSpec("birefnet-massive", BIREFNET, _RELEASES + "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
                  "33e726a2136a3d59eb0fdf613e31e3e9", 973.0, "BiRefNet trained on a massive dataset, general objects",
                  licence=MIT),
        ModelSpec("birefnet-general-fp16", BIREFNET, "", "", 490.0,
                  "birefnet-general in float16 for GPUs, as rembg converts it (used when rembg already made it)",
                  licence=MIT, found_only=True),
        ModelSpec("bria-rmbg", BRIA, _RELEASES + "bria-rmbg-2.0.onnx", "", 977.0,
                  "BRIA RMBG-2.0: BiRefNet-based, general objects. NON-COMMERCIAL licence (CC BY-NC 4.0)",
                  sha256="5b486f08200f513f460da46dd701db5fbb47d79b4be4b708a19444bcd4e79958",
                  licence=NON_COMMERCIAL),
    )
}

# Variants: int8 (QDQ, per-channel weights) built on first use from the float weights above.
# ``passes_bar`` records the dev-set result in docs/models.md (IoU within 0.01 and MAE
# within 0.005 of the float model); a variant that does not pass is never offered.
# Kept in float: the last Conv (side-output fusion), the Sigmoid and, for u2netp, the one Conv whose
# uint8 input error is largest (Conv_787); u2net passes the bar without that and runs 20 % faster.
_INT8 = Recipe("int8", "", exclude_last_convs=1, exclude_ops=("Sigmoid",))
for _base, _sensitive, _ok in (("u2netp", 1, True), ("u2net", 0, True)):
    _spec = variant(CATALOG[_base], replace(_INT8, ranges=f"{_base}.minmax.json", float_sensitive=_sensitive),
                    f"{_base} quantized to int8 on this machine from the official weights; about 2x faster on a CPU",
                    passes_bar=_ok)
    CATALOG[_spec.name] = _spec

DEFAULT_MODEL = "u2netp"


class UnknownModelError(ValueError):
    pass


def get_spec(name: str) -> ModelSpec:
    """Look a model up by its dropdown name (a ``.onnx`` suffix is tolerated)."""
    key = name[:-5] if name.endswith(".onnx") else name
    try:
        return CATALOG[key]
    except KeyError:
        raise UnknownModelError(
            f"unknown model '{name}' (perhaps from an older workflow); "
            f"choose one of: {', '.join(CATALOG)}"
        ) from None
