"""What each channel wants from a photo, as data.

An :class:`ImageRule` names a purpose ("shopee.main", "web.320") and the limits its image must meet. The table
below is the default registry, keyed by purpose; channel adapters can declare their own rules later and the
pipeline treats them the same way. Facts come from ``marketplaces.md`` (§ noted per rule); where the platform
docs are silent, the value is our choice and the rule says so (``stated_default=True`` with the reason).

Sizes: every marketplace image is made at 1000 px on its long side. Sellers' guides for Shopee (third-party, not in
the API docs) recommend at least 800 × 800 so buyers can zoom; 1000 px clears that, fits inside every documented
maximum, and is 1/4 of a 12 MP phone photo, so the JPEG decoder hands it over at that size almost for free. A photo
that is already up to 10 % larger (1008 px from a 4032 × 3024 iPhone or Pixel photo) is sent at its own size: no
resample.

Square images are padded on white, never cropped: farmers frame the produce, its label and its certification stamp
themselves and we cannot see what matters in the frame; Shopee's cover rules also forbid a cropped product and
prefer a white background. Web thumbnails keep the photo's shape (the page crops with CSS if it wants tiles).

Web thumbnails are WebP: on the benchmark photo a 640 px WebP is 17 KB against 33 KB for a JPEG at the same quality
setting (75), and 8.4 KB against 13.8 KB at 320 px. On 3G (in practice 50-100 KB/s) a grid of twenty 320 px
thumbnails is then ~170 KB instead of ~280 KB: one to two seconds saved on the page buyers open most. Every browser
a buyer in Vietnam uses decodes WebP (Chrome/Android since 2014, Safari since iOS 14), so no JPEG fallback is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

MB = 1024 * 1024
KB = 1024

# Bump when the way renditions are made changes (filters, encoder settings), so every cached one is remade.
PIPELINE_VERSION = 1


class OutputFormat(StrEnum):
    jpeg = "JPEG"
    png = "PNG"
    webp = "WEBP"

    @property
    def mime_type(self) -> str:
        return f"image/{self.value.lower()}"

    @property
    def extension(self) -> str:
        return {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.value]


class Fit(StrEnum):
    pad = "pad"  # the whole photo, centred on white
    crop = "crop"  # fill the frame, centre crop


class SizeBy(StrEnum):
    long_side = "long_side"
    width = "width"


@dataclass(frozen=True, slots=True)
class ImageRule:
    """One purpose's limits. Sides are in pixels, ``aspect`` is width / height."""

    purpose: str
    min_side: int  # each side of the output at least this (small photos are enlarged only to reach it)
    max_side: int  # each side of the output at most this
    target: int  # the size we make: long side (or width, see ``size_by``), never enlarged to reach it
    max_bytes: int
    formats: tuple[OutputFormat, ...]  # accepted by the channel; we produce the first
    square: bool = False
    min_aspect: Fraction | None = None  # outside [min_aspect, max_aspect] the output is made square
    max_aspect: Fraction | None = None
    fit: Fit = Fit.pad
    size_by: SizeBy = SizeBy.long_side
    # The output may be this much larger than ``target`` when that is the photo's own size, saving a resample
    # (12 MP phones give 1008 px at 1/4 scale: sent as is rather than resampled to 1000).
    tolerance: Fraction = Fraction(0)
    quality: int = 85  # first encoder quality tried; lowered in steps to meet max_bytes
    min_quality: int = 60  # below this the image is made smaller instead
    stated_default: bool = False  # True where the platform documents nothing and the values are our choice
    note: str = ""  # where the numbers come from, or why we chose them

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= self.target <= self.max_side:
            raise ValueError(f"{self.purpose}: need 1 <= min_side <= target <= max_side")
        if not self.formats:
            raise ValueError(f"{self.purpose}: no output format")
        if (self.min_aspect is None) != (self.max_aspect is None):
            raise ValueError(f"{self.purpose}: give both aspect bounds or neither")

    @property
    def output_format(self) -> OutputFormat:
        return self.formats[0]

    def aspect_allowed(self, aspect: Fraction) -> bool:
        if self.min_aspect is None or self.max_aspect is None:
            return True
        return self.min_aspect <= aspect <= self.max_aspect

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that shapes the output changes: part of the rendition's storage key."""
        fields = {
            field.name: str(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.name not in ("note", "stated_default")
        }
        payload = json.dumps({"v": PIPELINE_VERSION, **fields}, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


MARKETPLACE_TARGET = 1000
MARKETPLACE_TOLERANCE = Fraction(1, 10)
JPEG_ONLY = (OutputFormat.jpeg,)

SHOPEE = ImageRule(
    purpose="shopee.main",
    min_side=500,
    max_side=4000,
    target=MARKETPLACE_TARGET,
    tolerance=MARKETPLACE_TOLERANCE,
    max_bytes=10 * MB,
    formats=JPEG_ONLY,
    square=True,
    stated_default=True,
    note="§1.6: JPG/PNG, ≤10 MB, square for scene=normal. Pixel bounds UNCONFIRMED: 500-4000 is our choice.",
)
LAZADA = ImageRule(
    purpose="lazada.main",
    min_side=330,
    max_side=5000,
    target=MARKETPLACE_TARGET,
    tolerance=MARKETPLACE_TOLERANCE,
    max_bytes=1 * MB,
    formats=JPEG_ONLY,
    note="§2.6: 330-5000 px each side, jpg/png; guide says 3 MB, UploadImage says 1 MB: we keep ≤1 MB.",
)
TIKTOK = ImageRule(
    purpose="tiktok.main",
    min_side=300,
    max_side=4000,
    target=MARKETPLACE_TARGET,
    tolerance=MARKETPLACE_TOLERANCE,
    max_bytes=10 * MB,
    formats=JPEG_ONLY,
    min_aspect=Fraction(3, 4),
    max_aspect=Fraction(4, 3),
    note="§3.6: MAIN_IMAGE 300-4000 px, ≤10 MB; outside 3:4-4:3 TikTok squares it, so we square it first.",
)
TIKI = ImageRule(
    purpose="tiki.main",
    min_side=500,
    max_side=4000,
    target=MARKETPLACE_TARGET,
    tolerance=MARKETPLACE_TOLERANCE,
    max_bytes=1 * MB,
    formats=JPEG_ONLY,
    square=True,
    stated_default=True,
    note=(
        "§4: Tiki documents no image rules. We send what every other marketplace accepts: square, "
        "JPEG, 500-4000 px, ≤1 MB (the strictest of the documented limits)."
    ),
)


def _thumbnail(width: int, max_bytes: int) -> ImageRule:
    return ImageRule(
        purpose=f"web.{width}",
        min_side=1,
        max_side=4 * width,
        target=width,
        size_by=SizeBy.width,
        max_bytes=max_bytes,
        formats=(OutputFormat.webp,),
        quality=75,
        min_quality=50,
        stated_default=True,
        note="Our storefront and app: WebP for page weight on 3G; budget per image keeps a grid of 20 light.",
    )


WEB_160 = _thumbnail(160, 20 * KB)
WEB_320 = _thumbnail(320, 50 * KB)
WEB_640 = _thumbnail(640, 150 * KB)

CHANNEL_RULES: Mapping[str, ImageRule] = MappingProxyType(
    {"shopee": SHOPEE, "lazada": LAZADA, "tiktok": TIKTOK, "tiki": TIKI}
)
"""The main-image rule of each built-in channel, by channel name."""

WEB_RULES: tuple[ImageRule, ...] = (WEB_160, WEB_320, WEB_640)

DEFAULT_RULES: Mapping[str, ImageRule] = MappingProxyType(
    {rule.purpose: rule for rule in (*CHANNEL_RULES.values(), *WEB_RULES)}
)
"""Every rule we make renditions for by default, keyed by purpose."""


def rules_for(purposes: Iterable[str], registry: Mapping[str, ImageRule] = DEFAULT_RULES) -> list[ImageRule]:
    """The rules for these purposes, in the order given; an unknown purpose is a programming error."""
    return [registry[purpose] for purpose in purposes]
