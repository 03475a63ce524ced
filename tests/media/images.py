"""Test photos, made in code (no binary files in the repository)."""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image, ImageDraw

# Somewhere in Bình Phước; the test checks these never come out again.
FARM_GPS = {1: "N", 2: (11.0, 32.0, 17.5), 3: "E", 4: (106.0, 53.0, 42.25)}
SECRET = "FARM-SECRET-7731"  # written into EXIF, XMP and the JPEG comment; must not appear in any output
XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="{SECRET}"/>'
    "</rdf:RDF></x:xmpmeta>"
).encode()

RED = (230, 20, 20)
BLUE = (20, 40, 220)


@functools.lru_cache(maxsize=32)
def photo(size: tuple[int, int], *, seed: int = 1, noise: float = 0.08) -> Image.Image:
    """Photo-like content (gradients, soft shapes, grain) so encoders behave as on real photos.

    Cached: callers must not draw on the result (``with_marker`` copies it).
    """
    width, height = size
    small = (max(8, width // 4), max(8, height // 4))  # shapes drawn small and scaled up: soft edges, fast
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(small),
            Image.radial_gradient("L").resize(small),
            Image.linear_gradient("L").rotate(90).resize(small),
        ),
    )
    draw = ImageDraw.Draw(base)
    for i in range(12):
        x, y = (seed * 97 + i * 131) % small[0], (seed * 53 + i * 71) % small[1]
        r = max(2, min(small) // 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(120 + i * 10, 200 - i * 9, 40 + i * 5))
    base = base.resize(size, Image.Resampling.BILINEAR)
    grain = Image.effect_noise(size, 64).convert("RGB")
    return Image.blend(base, grain, noise)


def with_marker(image: Image.Image, corner_size: int) -> Image.Image:
    """A red block in the stored top-left corner, a blue one in the stored bottom-left."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, corner_size, corner_size), fill=RED)
    draw.rectangle((0, image.height - corner_size, corner_size, image.height), fill=BLUE)
    return image


def phone_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = SECRET  # Make
    exif[0x0110] = "Phone 15"  # Model
    exif.get_ifd(0x8825).update(FARM_GPS)  # GPS
    return exif


def jpeg(
    image: Image.Image,
    *,
    orientation: int = 1,
    icc: bytes | None = None,
    quality: int = 90,
    metadata: bool = True,
) -> bytes:
    buffer = io.BytesIO()
    extra: dict[str, object] = {}
    if metadata:
        extra = {"exif": phone_exif(orientation), "xmp": XMP, "comment": SECRET.encode()}
    if icc:
        extra["icc_profile"] = icc
    image.save(buffer, "JPEG", quality=quality, **extra)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=phone_exif(), compress_level=1)
    return buffer.getvalue()


def webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=90, exif=phone_exif())
    return buffer.getvalue()


def heic(image: Image.Image) -> bytes:
    return _heic(image.tobytes(), image.size)


@functools.lru_cache(maxsize=4)
def _heic(pixels: bytes, size: tuple[int, int]) -> bytes:
    """pillow-heif's HEIF writer (registered by the pipeline module); x265 is slow, so results are cached."""
    import agrimarket.media.pipeline  # noqa: F401  (registers the HEIF plugin)

    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, "HEIF", quality=80, exif=phone_exif().tobytes())
    return buffer.getvalue()


def cutout(size: tuple[int, int]) -> Image.Image:
    """A product cut out on a transparent background (what background-removal apps make)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(40, 160, 60, 255))
    return image


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width × height``: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width × height``."""
    data = bytearray(jpeg(Image.new("RGB", (16, 16), (0, 128, 0)), metadata=False))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def swapped_primaries_profile() -> bytes:
    """An ICC v2 RGB profile whose red and green primaries are sRGB's green and red.

    Pure red in a photo tagged with it *is* green; only a pipeline that applies the profile shows it green.
    """
    description = b"Swapped RG test\x00"
    desc = (
        b"desc\x00\x00\x00\x00"
        + struct.pack(">I", len(description))
        + description
        + b"\x00" * 8  # no Unicode description
        + b"\x00\x00\x00"
        + b"\x00" * 67  # no ScriptCode description
    )
    gamma = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, 0x0233) + b"\x00\x00"  # gamma 2.2 (u8Fixed8)
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.3851, 0.7169, 0.0971)),  # sRGB's green
        (b"gXYZ", _xyz(0.4361, 0.2225, 0.0139)),  # sRGB's red
        (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, content in tags:
        padded = content + b"\x00" * (-len(content) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(content))
        body += padded
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 24
        + struct.pack(">I", 0)  # perceptual intent
        + _xyz(0.9642, 1.0, 0.8249)[8:]
        + b"\x00" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body
