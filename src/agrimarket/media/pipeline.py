"""The photo pipeline: check an upload, normalise it once, derive each channel's rendition from it.

1. **Check before decoding.** Byte size first, then the magic bytes; only JPEG, PNG, WebP and HEIC/HEIF are
   opened, and Pillow is told to try only the sniffed format's decoder. The header's pixel count is checked
   against our limit before a single pixel is decoded; Pillow's own decompression-bomb guard stays on behind it.
   Every failure is a 413 or a 422 with a message a farmer can act on; nothing leaks as a 500.
2. **Decode small.** We work out the largest size any rendition needs, and a JPEG is decoded straight at the
   coarsest DCT scale (1/2, 1/4, 1/8) that still covers it (``Image.draft``); other formats are decoded and then
   box-reduced by a whole factor (``Image.reduce``). That working image is the stored photo and the source of
   every rendition, each resized from the smallest intermediate at least twice its size.
3. **Normalise.** EXIF orientation applied, colours converted to sRGB through the embedded ICC profile, alpha
   kept only where it is meaningful, and *all* metadata dropped (EXIF, GPS, XMP, ICC, comments): the farm's
   location never leaves the system. Opaque photos are stored as JPEG q90, cut-outs with transparency as PNG.
4. **Renditions, once.** A rendition's storage key is its source's hash plus its rule's fingerprint, so it is
   made once, found again by key, and remade only when the photo (or the rule) changes.

The ``*_sync`` functions and :func:`process` are pure CPU work (no storage, no database) for benchmarks and
tests; the async API runs them in a small thread pool, off the event loop, with bounded concurrency so a burst of
uploads cannot take all the memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import io
import math
import os
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from typing import Any, ParamSpec, Protocol, TypeVar

from PIL import ExifTags, Image, ImageCms, ImageOps
from pillow_heif import register_heif_opener

from agrimarket.errors import AgriMarketError, Invalid, PayloadTooLarge
from agrimarket.media.rules import MB, Fit, ImageRule, OutputFormat, SizeBy
from agrimarket.media.storage import Storage, content_key
from agrimarket.observability import get_logger

# HEIC/HEIF from iPhones. Their embedded thumbnails, depth maps and auxiliary images are never needed.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

log = get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

WHITE = (255, 255, 255)
# Bicubic, as Pillow's own thumbnail(): for downscaling photos next to no visible difference from Lanczos,
# at ~25 % less time (measured in bench/media.py).
RESAMPLE = Image.Resampling.BICUBIC
MASTER_PREFIX = "images"
RENDITION_PREFIX = "renditions"
FIELD = "photo"

ACCEPTED = "Send a JPEG, PNG, WebP or HEIC photo."
NOT_A_PHOTO = f"This file is not a photo we can read. {ACCEPTED}"
DAMAGED = "This photo is damaged or incomplete; the upload may have been cut off. Please send it again."


class SourceFormat(StrEnum):
    """What we accept; the values are Pillow's format names."""

    jpeg = "JPEG"
    png = "PNG"
    webp = "WEBP"
    heif = "HEIF"


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """Upload limits (settings-ish; the app can build one from its Settings)."""

    max_bytes: int = 25 * MB
    # 64 MP covers every phone's normal modes (12, 48, 50 MP). At worst a PNG/WebP/HEIC this size is decoded
    # whole: 64 M × 4 bytes = 256 MB, times the worker count below. JPEGs are decoded at reduced scale.
    max_pixels: int = 64_000_000
    min_side: int = 100
    # The stored photo keeps at least this long side (when the photo has it), whatever the renditions need.
    master_min_side: int = 1000
    master_quality: int = 90


DEFAULT_LIMITS = MediaLimits()
# Our own stored photos passed the upload limits already; the stored size can only be smaller.
_STORED_LIMITS = MediaLimits(min_side=1)

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_GENERIC_BRANDS = {b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# Formats we recognise only to name them in the refusal.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP or Office file"),
)


def _brands(data: bytes) -> set[bytes]:
    """The ISO-BMFF ``ftyp`` box's major and compatible brands (HEIF, AVIF, MP4 …)."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return set()
    size = min(int.from_bytes(data[0:4], "big"), len(data), 4096)
    brands = {data[8:12]}
    brands.update(data[offset : offset + 4] for offset in range(16, size - 3, 4))
    return brands


def sniff(data: bytes) -> SourceFormat:
    """The photo's format from its first bytes, whatever the file is called; :class:`Invalid` otherwise."""
    if data[:3] == b"\xff\xd8\xff":
        return SourceFormat.jpeg
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return SourceFormat.png
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return SourceFormat.webp
    brands = _brands(data)
    if brands & _HEIF_BRANDS or (data[8:12] in _HEIF_GENERIC_BRANDS and not brands & _AVIF_BRANDS):
        return SourceFormat.heif
    kind = "an AVIF image" if brands & _AVIF_BRANDS else None
    kind = kind or next((name for magic, name in _OTHER_SIGNATURES if data.startswith(magic)), None)
    if kind:
        raise Invalid(f"This file is {kind}, which we cannot use. {ACCEPTED}", field=FIELD)
    raise Invalid(NOT_A_PHOTO, field=FIELD)


def check_upload(data: bytes, limits: MediaLimits = DEFAULT_LIMITS) -> SourceFormat:
    """Size and format, before any decoding."""
    if not data:
        raise Invalid("The file is empty. Choose a photo and send it again.", field=FIELD)
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"This photo is {len(data) / MB:.1f} MB; the limit is {limits.max_bytes / MB:.0f} MB. "
            "Send a smaller photo, or take it again with the camera's normal size setting.",
            field=FIELD,
        )
    return sniff(data)


def clean_filename(filename: str | None) -> str | None:
    """The name as the farmer knows it (no folders, NFC, at most 255 characters), for display only."""
    if not filename:
        return None
    name = unicodedata.normalize("NFC", filename.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or None


# --- sizing ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """A rendition's geometry: the output size, and the size of the photo inside it."""

    canvas: tuple[int, int]
    content: tuple[int, int]


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _scale(box: tuple[float, float], source: tuple[int, int], *, cover: bool) -> float:
    """The factor that fits ``source`` inside ``box`` (or makes it cover ``box``)."""
    x, y = box[0] / source[0], box[1] / source[1]
    return max(x, y) if cover else min(x, y)


def plan(source: tuple[int, int], rule: ImageRule) -> Plan:
    """Where the rule's output size comes from.

    The output takes the photo's shape unless the rule wants a square or the shape is outside its aspect range
    (then square). It is made at ``rule.target`` (or the photo's own size if that is within ``rule.tolerance``
    above it), never enlarged past the photo's own size. Only ``min_side`` enlarges a photo: uniformly when the
    long side still fits ``max_side``; otherwise (a thin panorama) the short side is padded up to it. Whatever
    shape the output ends up with, the photo is fitted in by padding (or cropping, per ``rule.fit``).
    """
    sw, sh = source
    aspect = Fraction(sw, sh)
    out_aspect = Fraction(1) if rule.square or not rule.aspect_allowed(aspect) else aspect
    if rule.size_by is SizeBy.width or out_aspect >= 1:
        cw, ch = float(rule.target), float(rule.target / out_aspect)
    else:
        cw, ch = float(rule.target * out_aspect), float(rule.target)
    cover = rule.fit is Fit.crop
    scale = _scale((cw, ch), source, cover=cover)
    if scale > 1 or scale * (1 + rule.tolerance) >= 1:
        # Never enlarge just to reach the target; and keep the photo's own size when it is only slightly
        # larger than the target (within the rule's tolerance): a whole-image resample saved.
        cw, ch = cw / scale, ch / scale
    short, long = min(cw, ch), max(cw, ch)
    if short < rule.min_side and long * rule.min_side / short <= rule.max_side:
        # Too small for the rule: enlarge (keeping the shape) when that fits; a sliver is padded instead.
        cw, ch = cw * rule.min_side / short, ch * rule.min_side / short
    canvas = (
        _clamp(round(cw), rule.min_side, rule.max_side),
        _clamp(round(ch), rule.min_side, rule.max_side),
    )
    scale = _scale(canvas, source, cover=cover)
    content = (max(1, round(sw * scale)), max(1, round(sh * scale)))
    if not cover:
        content = (min(content[0], canvas[0]), min(content[1], canvas[1]))
    if abs(content[0] - canvas[0]) <= 1 and abs(content[1] - canvas[1]) <= 1:
        content = canvas  # a one-pixel rounding difference is not worth a white line
    return Plan(canvas=canvas, content=content)


def working_size_needed(source: tuple[int, int], rules: Iterable[ImageRule], limits: MediaLimits) -> tuple[int, int]:
    """The smallest (width, height) of the photo that every rule, and the stored photo, can be made from."""
    sw, sh = source
    long_side = max(sw, sh)
    master = min(limits.master_min_side, long_side)
    need_w, need_h = math.ceil(sw * master / long_side), math.ceil(sh * master / long_side)
    for rule in rules:
        cw, ch = plan(source, rule).content
        need_w, need_h = max(need_w, min(cw, sw)), max(need_h, min(ch, sh))
    return need_w, need_h


# --- decoding and normalising ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A transform from the photo's own colour profile to sRGB; ``None`` when it is sRGB already or unusable.

    Building a transform costs milliseconds and phones embed the same few profiles (Display P3, sRGB), so
    transforms are cached by profile. lcms transforms are safe to share between threads.
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(profile) or "").lower().replace(" ", ""):
            return None
        out_mode = "RGBA" if mode == "RGBA" else "RGB"
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        log.warning("media.icc_profile_unusable", mode=mode)
        return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)


def normalise_sync(image: Image.Image) -> Image.Image:
    """Upright, sRGB, RGB (or RGBA if any pixel is see-through), and no metadata at all."""
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        transform = _to_srgb(icc, image.mode)
        if transform is not None:
            image = ImageCms.applyTransform(image, transform) or image
    if _has_alpha(image):
        image = image.convert("RGBA")
        if image.getchannel("A").getextrema()[0] == 255:
            image = image.convert("RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    image.info = {}  # EXIF, GPS, XMP, ICC, comments: nothing is carried to any output
    return image


def decode_sync(
    data: bytes,
    rules: Sequence[ImageRule],
    limits: MediaLimits = DEFAULT_LIMITS,
) -> tuple[Image.Image, SourceFormat]:
    """The photo checked, decoded at the smallest scale the rules allow, and normalised."""
    source_format = check_upload(data, limits)
    try:
        opened = Image.open(io.BytesIO(data), formats=[source_format.value])
        width, height = opened.size
        if width * height > limits.max_pixels:
            raise _too_many_pixels(limits, (width, height))
        if min(width, height) < limits.min_side:
            raise Invalid(
                f"This photo is too small ({width}×{height} pixels). Send a photo at least "
                f"{limits.min_side} pixels on each side.",
                field=FIELD,
            )
        # Plan on the upright size: a phone photo is often stored on its side with an orientation tag.
        orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
        upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        need_w, need_h = working_size_needed(upright, rules, limits)
        if upright != (width, height):
            need_w, need_h = need_h, need_w
        if source_format is SourceFormat.jpeg:
            opened.draft(None, (need_w, need_h))  # DCT scaling: decode at 1/2, 1/4 or 1/8 directly
        opened.load()
        image: Image.Image = opened
        factor = min(image.width // need_w, image.height // need_h)
        if factor >= 2:
            image = image.reduce(factor)
        return normalise_sync(image), source_format
    except AgriMarketError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning, if warnings are errors
        raise _too_many_pixels(limits, None) from None
    except Exception as exc:  # any decoder failure on untrusted bytes is the file's fault, not a 500
        log.info("media.decode_failed", format=source_format.value, error=repr(exc))
        raise Invalid(DAMAGED, field=FIELD) from None


def _too_many_pixels(limits: MediaLimits, size: tuple[int, int] | None) -> PayloadTooLarge:
    limit = f"{limits.max_pixels / 1e6:.0f} megapixels"
    what = f"is {size[0]}×{size[1]} pixels" if size else "has far too many pixels"
    return PayloadTooLarge(
        f"This photo {what}; the limit is {limit}. Take it with the camera's normal size setting, "
        "or send a smaller copy.",
        field=FIELD,
    )


# --- encoding --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Encoded:
    """Image bytes ready to store."""

    data: bytes
    format: OutputFormat
    width: int
    height: int
    quality: int | None
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def mime_type(self) -> str:
        return self.format.mime_type


def _encode(image: Image.Image, output: OutputFormat, quality: int | None) -> bytes:
    buffer = io.BytesIO()
    if output is OutputFormat.jpeg:
        image.save(buffer, "JPEG", quality=quality)
    elif output is OutputFormat.webp:
        # method 2: ~10 % larger than the default method 4 on photos, at well under half the time.
        image.save(buffer, "WEBP", quality=quality, method=2)
    else:
        image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


def encode_master_sync(image: Image.Image, limits: MediaLimits = DEFAULT_LIMITS) -> Encoded:
    """The stored photo: JPEG, or PNG when it has real transparency (a cut-out on no background)."""
    if image.mode == "RGBA":
        return Encoded(_encode(image, OutputFormat.png, None), OutputFormat.png, *image.size, None)
    data = _encode(image, OutputFormat.jpeg, limits.master_quality)
    return Encoded(data, OutputFormat.jpeg, *image.size, limits.master_quality)


class _Renderer:
    """Renditions of one working image, sharing resized intermediates and identical encodes."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.resized: dict[tuple[int, int], Image.Image] = {image.size: image}
        self.flattened: dict[tuple[int, int], Image.Image] = {}
        self.encoded: dict[tuple[Any, ...], bytes] = {}

    def content(self, size: tuple[int, int]) -> Image.Image:
        if size not in self.resized:
            # From the smallest intermediate at least twice as large: each step at most halves, which keeps the
            # filter sharp and makes the small sizes nearly free.
            bases = [im for s, im in self.resized.items() if s[0] >= 2 * size[0] and s[1] >= 2 * size[1]]
            base = min(bases, key=lambda im: im.width * im.height, default=self.image)
            self.resized[size] = base.resize(size, RESAMPLE, reducing_gap=3.0)
        return self.resized[size]

    def opaque(self, size: tuple[int, int]) -> Image.Image:
        """The content flattened on white, for formats without transparency."""
        image = self.content(size)
        if image.mode != "RGBA":
            return image
        if size not in self.flattened:
            background = Image.new("RGBA", size, WHITE)
            self.flattened[size] = Image.alpha_composite(background, image).convert("RGB")
        return self.flattened[size]

    def render(self, rule: ImageRule) -> Encoded:
        """The rule's rendition: quality lowered step by step, then size, until the bytes fit."""
        current = rule
        while True:
            geometry = plan(self.image.size, current)
            for quality in range(current.quality, current.min_quality - 1, -5):
                data = self.encode(geometry, current, quality)
                if len(data) <= rule.max_bytes:
                    return Encoded(data, rule.output_format, *geometry.canvas, quality)
            smaller = math.floor(current.target * 0.85)
            if smaller < rule.min_side:
                raise Invalid(
                    f"We could not make this photo small enough for {rule.purpose}. Try a simpler photo.",
                    field=FIELD,
                )
            current = replace(current, target=smaller)

    def encode(self, geometry: Plan, rule: ImageRule, quality: int) -> bytes:
        output = rule.output_format
        key = (geometry, rule.fit, output, quality)
        if key not in self.encoded:
            jpeg = output is OutputFormat.jpeg  # no transparency: flattened on white
            image = self.opaque(geometry.content) if jpeg else self.content(geometry.content)
            if geometry.content != geometry.canvas:
                if rule.fit is Fit.crop:
                    image = ImageOps.fit(image, geometry.canvas, RESAMPLE)
                else:
                    fill = WHITE if image.mode == "RGB" else (*WHITE, 0)
                    image = ImageOps.pad(image, geometry.canvas, RESAMPLE, color=fill)
            self.encoded[key] = _encode(image, output, quality)
        return self.encoded[key]


def render_sync(image: Image.Image, rules: Sequence[ImageRule]) -> list[Encoded]:
    """Each rule's rendition of a normalised image, largest first internally, returned in the rules' order."""
    renderer = _Renderer(image)
    by_size = sorted(rules, key=lambda rule: -math.prod(plan(image.size, rule).content))
    made = {rule.purpose: renderer.render(rule) for rule in by_size}
    return [made[rule.purpose] for rule in rules]


@dataclass(frozen=True, slots=True)
class Processed:
    master: Encoded
    renditions: list[tuple[ImageRule, Encoded]]
    source_format: SourceFormat


def process(data: bytes, rules: Sequence[ImageRule], limits: MediaLimits = DEFAULT_LIMITS) -> Processed:
    """Upload bytes to stored photo and every rendition, in memory: what an upload costs in CPU."""
    image, source_format = decode_sync(data, rules, limits)
    master = encode_master_sync(image, limits)
    return Processed(master, list(zip(rules, render_sync(image, rules), strict=True)), source_format)


# --- the async API ---------------------------------------------------------------------------------------


@functools.cache
def cpu_executor() -> ThreadPoolExecutor:
    """Pillow releases the GIL while it decodes, resizes and encodes, so threads run in parallel; the pool's
    size bounds how many photos are in memory at once."""
    return ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="media")


async def _off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()  # keep the request's log context in the worker thread
    return await loop.run_in_executor(cpu_executor(), functools.partial(context.run, fn, *args, **kwargs))


class StoredPhoto(Protocol):
    """A normalised photo in storage: a :class:`NormalisedImage`, or a ``MediaAsset`` row."""

    @property
    def storage_key(self) -> str: ...

    @property
    def content_hash(self) -> str: ...


class StoredRendition(Protocol):
    """A rendition made before: a :class:`RenditionResult`, or a ``Rendition`` row."""

    @property
    def purpose(self) -> str: ...

    @property
    def source_hash(self) -> str: ...

    @property
    def content_hash(self) -> str: ...

    @property
    def storage_key(self) -> str: ...

    @property
    def mime_type(self) -> str: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def byte_size(self) -> int: ...


@dataclass(frozen=True, slots=True)
class NormalisedImage:
    """The stored photo; field names match ``MediaAsset``'s columns."""

    storage_key: str
    content_hash: str  # SHA-256 of the stored bytes
    mime_type: str
    width: int
    height: int
    byte_size: int
    source_format: SourceFormat
    original_filename: str | None


@dataclass(frozen=True, slots=True)
class RenditionResult:
    """One rendition in storage; field names match ``Rendition``'s columns."""

    purpose: str
    source_hash: str
    content_hash: str
    storage_key: str
    mime_type: str
    width: int
    height: int
    byte_size: int
    reused: bool  # True when it was already stored and no work was done


def master_key(encoded: Encoded) -> str:
    return content_key(MASTER_PREFIX, encoded.data, encoded.format.extension)[0]


def rendition_key(source_hash: str, rule: ImageRule) -> str:
    """Depends only on the source photo and the rule: made once, remade when either changes."""
    name = f"{rule.purpose}-{rule.fingerprint}.{rule.output_format.extension}"
    return f"{RENDITION_PREFIX}/{source_hash[:2]}/{source_hash}/{name}"


async def read_capped(read: Callable[[int], Awaitable[bytes]], limits: MediaLimits = DEFAULT_LIMITS) -> bytes:
    """An upload's bytes, refusing it as soon as it passes the byte limit (pass ``UploadFile.read``)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await read(1024 * 1024):
        total += len(chunk)
        if total > limits.max_bytes:
            raise PayloadTooLarge(
                f"This photo is larger than {limits.max_bytes / MB:.0f} MB. Send a smaller photo, or take it "
                "again with the camera's normal size setting.",
                field=FIELD,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def ingest(
    data: bytes,
    filename: str | None,
    storage: Storage,
    rules: Sequence[ImageRule] = (),
    *,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> tuple[NormalisedImage, list[RenditionResult]]:
    """Check, normalise and store an upload, and make its renditions from the same decoded image.

    Raises :class:`PayloadTooLarge` (413) or :class:`Invalid` (422) with a message for the farmer.
    The same photo uploaded twice lands on the same keys and is not stored or rendered again.
    """
    image, source_format = await _off_loop(decode_sync, data, rules, limits)
    master = await _off_loop(encode_master_sync, image, limits)
    key = master_key(master)
    is_new = not await storage.exists(key)
    if is_new:
        await storage.put(key, master.data, content_type=master.mime_type)
    normalised = NormalisedImage(
        storage_key=key,
        content_hash=master.sha256,
        mime_type=master.mime_type,
        width=master.width,
        height=master.height,
        byte_size=len(master.data),
        source_format=source_format,
        original_filename=clean_filename(filename),
    )
    # Renditions are written after their photo, so a photo new to storage has none to look for.
    renditions = await _render(normalised, rules, storage, known={}, image=image, look_in_storage=not is_new)
    return normalised, renditions


async def render(
    photo: StoredPhoto,
    rules: Sequence[ImageRule],
    storage: Storage,
    *,
    known: Mapping[str, StoredRendition] | None = None,
) -> list[RenditionResult]:
    """The photo's rendition for each rule, made only where none is stored yet for this photo and rule.

    ``known`` (by purpose, e.g. the asset's ``Rendition`` rows) is trusted without touching storage when its key
    is the one this photo and rule give; otherwise storage is asked. The stored photo is fetched and decoded
    only if some rendition has to be made.
    """
    return await _render(photo, rules, storage, known=known or {}, image=None, look_in_storage=True)


async def _render(
    photo: StoredPhoto,
    rules: Sequence[ImageRule],
    storage: Storage,
    *,
    known: Mapping[str, StoredRendition],
    image: Image.Image | None,
    look_in_storage: bool,
) -> list[RenditionResult]:
    keys = {rule.purpose: rendition_key(photo.content_hash, rule) for rule in rules}
    results: dict[str, RenditionResult] = {}
    unknown: list[ImageRule] = []
    for rule in rules:
        previous = known.get(rule.purpose)
        if previous is not None and previous.storage_key == keys[rule.purpose]:
            results[rule.purpose] = _result(rule, photo.content_hash, keys[rule.purpose], previous, reused=True)
        else:
            unknown.append(rule)
    stored = [False] * len(unknown)
    if look_in_storage:  # concurrently: against S3 each check is a round trip
        stored = list(await asyncio.gather(*(storage.exists(keys[rule.purpose]) for rule in unknown)))
    found = [rule for rule, present in zip(unknown, stored, strict=True) if present]
    missing = [rule for rule, present in zip(unknown, stored, strict=True) if not present]
    for result in await asyncio.gather(*(_inspect(storage, r, photo.content_hash, keys[r.purpose]) for r in found)):
        results[result.purpose] = result
    if missing:
        if image is None:
            data = await storage.get(photo.storage_key)
            decoded, _ = await _off_loop(decode_sync, data, missing, _STORED_LIMITS)
            image = decoded
        made = await _off_loop(render_sync, image, missing)
        await asyncio.gather(
            *(
                storage.put(keys[rule.purpose], encoded.data, content_type=encoded.mime_type)
                for rule, encoded in zip(missing, made, strict=True)
            )
        )
        for rule, encoded in zip(missing, made, strict=True):
            results[rule.purpose] = RenditionResult(
                purpose=rule.purpose,
                source_hash=photo.content_hash,
                content_hash=encoded.sha256,
                storage_key=keys[rule.purpose],
                mime_type=encoded.mime_type,
                width=encoded.width,
                height=encoded.height,
                byte_size=len(encoded.data),
                reused=False,
            )
    return [results[rule.purpose] for rule in rules]


def _result(rule: ImageRule, source_hash: str, key: str, previous: StoredRendition, *, reused: bool) -> RenditionResult:
    return RenditionResult(
        purpose=rule.purpose,
        source_hash=source_hash,
        content_hash=previous.content_hash,
        storage_key=key,
        mime_type=previous.mime_type,
        width=previous.width,
        height=previous.height,
        byte_size=previous.byte_size,
        reused=reused,
    )


async def _inspect(storage: Storage, rule: ImageRule, source_hash: str, key: str) -> RenditionResult:
    """A stored rendition's facts from its bytes and header alone (no decoding, no encoding, no write)."""
    data = await storage.get(key)
    with Image.open(io.BytesIO(data), formats=[rule.output_format.value]) as stored:
        width, height = stored.size
    return RenditionResult(
        purpose=rule.purpose,
        source_hash=source_hash,
        content_hash=hashlib.sha256(data).hexdigest(),
        storage_key=key,
        mime_type=rule.output_format.mime_type,
        width=width,
        height=height,
        byte_size=len(data),
        reused=True,
    )
