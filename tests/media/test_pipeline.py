from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import pytest
from PIL import Image, ImageCms

from agrimarket.errors import Invalid, PayloadTooLarge
from agrimarket.media import pipeline
from agrimarket.media.pipeline import (
    DEFAULT_LIMITS,
    MediaLimits,
    NormalisedImage,
    RenditionResult,
    SourceFormat,
    ingest,
    read_capped,
    render,
    render_sync,
)
from agrimarket.media.rules import DEFAULT_RULES, LAZADA, MB, ImageRule, OutputFormat, SizeBy
from tests.media import images
from tests.media.support import CountingStorage

RULES: list[ImageRule] = list(DEFAULT_RULES.values())
NOT_A_PHOTO = "This file is not a photo we can read. Send a JPEG, PNG, WebP or HEIC photo."


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def alpha_at(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[3])


def near(pixel: Any, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


async def stored_outputs(
    storage: CountingStorage, photo: NormalisedImage, renditions: Sequence[RenditionResult]
) -> dict[str, bytes]:
    keys = {"master": photo.storage_key} | {r.purpose: r.storage_key for r in renditions}
    return {name: await storage.inner.get(key) for name, key in keys.items()}


# --- refused uploads: a clear 413/422, nothing stored ------------------------------------------------------


async def test_a_text_file_named_jpg_is_refused_as_not_a_photo(storage: CountingStorage) -> None:
    with pytest.raises(Invalid) as caught:
        await ingest(b"Gia sau rieng hom nay: 85.000d/kg\n", "sau-rieng.jpg", storage, RULES)
    assert caught.value.status_code == 422
    assert caught.value.message == NOT_A_PHOTO
    assert storage.puts == []


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "a GIF image"),
        (b"%PDF-1.7\n%...", "a PDF document"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "an AVIF image"),
    ],
)
async def test_other_known_formats_are_named_in_the_refusal(storage: CountingStorage, data: bytes, named: str) -> None:
    with pytest.raises(Invalid, match=f"This file is {named}, which we cannot use. Send a JPEG, PNG, WebP or HEIC"):
        await ingest(data, "photo.jpg", storage, RULES)


async def test_an_empty_file_is_refused(storage: CountingStorage) -> None:
    with pytest.raises(Invalid, match="The file is empty"):
        await ingest(b"", "x.jpg", storage, RULES)


async def test_an_upload_over_the_byte_limit_is_refused_before_decoding(storage: CountingStorage) -> None:
    oversized = b"\xff\xd8\xff" + bytes(25 * MB)
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest(oversized, "big.jpg", storage, RULES)
    assert caught.value.status_code == 413
    assert caught.value.message.startswith("This photo is 25.0 MB; the limit is 25 MB.")
    assert storage.puts == []


async def test_read_capped_stops_reading_as_soon_as_the_limit_is_passed() -> None:
    reads = 0

    async def read(size: int) -> bytes:
        nonlocal reads
        reads += 1
        return b"\x00" * size  # an endless upload

    with pytest.raises(PayloadTooLarge, match="larger than 2 MB"):
        await read_capped(read, MediaLimits(max_bytes=2 * MB))
    assert reads == 3


async def test_read_capped_returns_an_upload_within_the_limit() -> None:
    chunks = [b"abc", b"def", b""]

    async def read(size: int) -> bytes:
        return chunks.pop(0)

    assert await read_capped(read) == b"abcdef"


@pytest.mark.parametrize(
    "bomb",
    [images.png_declaring(100_000, 100_000), images.jpeg_declaring(65_000, 65_000)],
    ids=["png-10-gigapixels", "jpeg-4-gigapixels"],
)
async def test_a_decompression_bomb_is_refused_from_its_header(storage: CountingStorage, bomb: bytes) -> None:
    assert len(bomb) < 1000  # tiny file, huge declared size: decoding it would need gigabytes
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest(bomb, "bomb.png", storage, RULES)
    assert caught.value.status_code == 413
    assert "the limit is 64 megapixels" in caught.value.message
    assert storage.puts == []


async def test_a_bomb_below_pillows_hard_limit_is_still_refused_by_ours(storage: CountingStorage) -> None:
    # 100 MP: above Pillow's warning threshold (~89 MP), below its error threshold (~179 MP), above our 64 MP.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(PayloadTooLarge) as caught:
        await ingest(images.png_declaring(10_000, 10_000), "bomb.png", storage, RULES)
    assert caught.value.message.startswith("This photo is 10000×10000 pixels; the limit is 64 megapixels.")


async def test_a_photo_over_our_pixel_limit_is_refused_with_its_size(storage: CountingStorage) -> None:
    data = images.jpeg(images.photo((1200, 1000)), metadata=False)
    with pytest.raises(PayloadTooLarge) as caught:
        await ingest(data, "x.jpg", storage, RULES, limits=MediaLimits(max_pixels=1_000_000))
    assert caught.value.message.startswith("This photo is 1200×1000 pixels; the limit is 1 megapixels.")


def _truncated(make: Callable[[Image.Image], bytes]) -> bytes:
    data = make(images.photo((480, 360)))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        _truncated(lambda im: images.jpeg(im, metadata=False)),
        _truncated(images.png),
        _truncated(images.webp),
        _truncated(images.heic),
        b"\xff\xd8\xff\xe0" + b"\x5a" * 5000,  # a JPEG signature followed by junk
    ],
    ids=["jpeg", "png", "webp", "heic", "junk-after-signature"],
)
async def test_a_truncated_or_corrupt_photo_is_refused_as_damaged(storage: CountingStorage, data: bytes) -> None:
    with pytest.raises(Invalid) as caught:
        await ingest(data, "cut.jpg", storage, RULES)
    assert caught.value.status_code == 422
    assert caught.value.message.startswith("This photo is damaged or incomplete")
    assert storage.puts == []


async def test_a_tiny_image_is_refused(storage: CountingStorage) -> None:
    with pytest.raises(Invalid, match=r"too small \(60×40 pixels\)"):
        await ingest(images.jpeg(images.photo((60, 40))), "icon.jpg", storage, RULES)


# --- normalisation -----------------------------------------------------------------------------------------


async def test_a_phone_photo_rotated_by_exif_comes_out_upright(storage: CountingStorage) -> None:
    # Stored sideways (1200 × 900) with orientation 6: "rotate 90° clockwise to display".
    stored = images.with_marker(images.photo((1200, 900)), corner_size=150)
    photo, renditions = await ingest(images.jpeg(stored, orientation=6), "IMG_0001.JPG", storage, RULES)

    assert (photo.width, photo.height) == (900, 1200)
    outputs = await stored_outputs(storage, photo, renditions)
    for name in ("master", "lazada.main", "web.320"):
        image = opened(outputs[name]).convert("RGB")
        assert image.height > image.width, name
        # stored top-left (red) is now top-right; stored bottom-left (blue) is now top-left
        assert near(image.getpixel((image.width - 3, 3)), images.RED), name
        assert near(image.getpixel((3, 3)), images.BLUE), name
        assert not near(image.getpixel((3, image.height - 3)), images.RED), name


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_orientation_is_applied_to_png_and_webp_too_even_when_reduced(fmt: str) -> None:
    stored = images.with_marker(images.photo((2400, 1800)), corner_size=300)
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=images.phone_exif(orientation=6))
    image, _ = pipeline.decode_sync(buffer.getvalue(), RULES)  # decoded whole, then reduced by 2
    assert image.size == (900, 1200)
    assert near(image.getpixel((image.width - 3, 3)), images.RED)
    assert near(image.getpixel((3, 3)), images.BLUE)


def test_a_multi_picture_jpeg_is_read_as_its_first_picture() -> None:
    # Some phones write MPO (a JPEG followed by more pictures); Pillow's JPEG opener reads it.
    buffer = io.BytesIO()
    images.photo((2400, 1800)).save(buffer, "MPO", save_all=True, append_images=[images.photo((640, 480))])
    image, source_format = pipeline.decode_sync(buffer.getvalue(), RULES)
    assert (image.size, source_format) == ((1200, 900), SourceFormat.jpeg)


@pytest.mark.parametrize(
    ("make", "source_format"),
    [
        (lambda im: images.jpeg(im, orientation=1, icc=_srgb_icc()), SourceFormat.jpeg),
        (images.png, SourceFormat.png),
        (images.webp, SourceFormat.webp),
        (images.heic, SourceFormat.heif),
    ],
    ids=["jpeg", "png", "webp", "heic"],
)
async def test_no_metadata_leaves_the_system(
    storage: CountingStorage, make: Callable[[Image.Image], bytes], source_format: SourceFormat
) -> None:
    upload = make(images.photo((480, 360)))
    assert images.SECRET.encode() in upload  # the upload does carry the farm's EXIF (with GPS)
    assert opened(upload).getexif().get_ifd(0x8825)

    photo, renditions = await ingest(upload, "farm.jpg", storage, RULES)

    assert photo.source_format is source_format
    for name, data in (await stored_outputs(storage, photo, renditions)).items():
        assert images.SECRET.encode() not in data, name
        for marker in (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"ICC_PROFILE", b"eXIf", b"iCCP"):
            assert marker not in data, (name, marker)
        image = opened(data)
        assert not image.getexif(), name
        assert not image.getexif().get_ifd(0x8825), name  # no GPS
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment"} & set(image.info), name


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


async def test_colours_are_converted_to_srgb_through_the_embedded_profile(storage: CountingStorage) -> None:
    # In this profile the first channel is green: pure "red" pixel values are a green the buyer must see.
    upload = images.jpeg(Image.new("RGB", (400, 300), (255, 0, 0)), icc=images.swapped_primaries_profile())
    photo, renditions = await ingest(upload, "p3.jpg", storage, RULES)
    outputs = await stored_outputs(storage, photo, renditions)
    for name in ("master", "shopee.main", "web.160"):
        image = opened(outputs[name]).convert("RGB")
        assert near(image.getpixel((image.width // 2, image.height // 2)), (0, 255, 0), tolerance=50), name
        assert "icc_profile" not in opened(outputs[name]).info


async def test_an_srgb_photo_keeps_its_colours(storage: CountingStorage) -> None:
    upload = images.jpeg(Image.new("RGB", (400, 300), (255, 0, 0)), icc=_srgb_icc())
    photo, _ = await ingest(upload, "srgb.jpg", storage, RULES)
    master = opened(await storage.inner.get(photo.storage_key)).convert("RGB")
    assert near(master.getpixel((200, 150)), (255, 0, 0), tolerance=12)


async def test_a_cutout_keeps_transparency_where_it_can_and_is_flattened_on_white_for_jpeg(
    storage: CountingStorage,
) -> None:
    photo, renditions = await ingest(images.png(images.cutout((800, 600))), "cutout.png", storage, RULES)

    assert photo.mime_type == "image/png"
    outputs = await stored_outputs(storage, photo, renditions)
    master = opened(outputs["master"])
    assert master.mode == "RGBA"
    assert alpha_at(master, (2, 2)) == 0
    for rule in RULES:
        image = opened(outputs[rule.purpose])
        if rule.output_format is OutputFormat.jpeg:
            assert image.format == "JPEG"
            assert near(image.getpixel((2, 2)), (255, 255, 255), tolerance=3), rule.purpose
            assert near(image.getpixel((image.width // 2, image.height // 2)), (40, 160, 60)), rule.purpose
        else:
            assert image.mode == "RGBA", rule.purpose
            assert alpha_at(image, (2, 2)) == 0, rule.purpose


async def test_a_png_whose_alpha_is_all_opaque_is_stored_as_jpeg(storage: CountingStorage) -> None:
    opaque = images.photo((640, 480)).convert("RGBA")
    photo, _ = await ingest(images.png(opaque), "screenshot.png", storage, RULES)
    assert photo.mime_type == "image/jpeg"
    assert photo.storage_key.endswith(".jpg")


async def test_an_iphone_heic_is_accepted_and_stored_as_jpeg(storage: CountingStorage) -> None:
    photo, renditions = await ingest(images.heic(images.photo((480, 360))), "IMG_4242.HEIC", storage, RULES)
    assert (photo.source_format, photo.mime_type) == (SourceFormat.heif, "image/jpeg")
    assert (photo.width, photo.height) == (480, 360)
    assert photo.original_filename == "IMG_4242.HEIC"
    assert len(renditions) == len(RULES)


@pytest.mark.parametrize(
    "make", [lambda im: images.jpeg(im, metadata=False), images.png], ids=["jpeg-draft", "png-reduce"]
)
def test_a_large_photo_is_decoded_at_the_coarsest_scale_that_covers_every_rendition(
    make: Callable[[Image.Image], bytes],
) -> None:
    # Renditions need 1000 × 750 at most: a 2400 × 1800 photo is decoded (JPEG) or reduced (PNG) at 1/2.
    image, _ = pipeline.decode_sync(make(images.photo((2400, 1800))), RULES)
    assert image.size == (1200, 900)


def test_the_stored_photo_is_content_addressed_and_deterministic() -> None:
    upload = images.jpeg(images.photo((900, 700)))
    first, second = pipeline.process(upload, RULES), pipeline.process(upload, RULES)
    assert first.master.data == second.master.data
    assert pipeline.master_key(first.master) == f"images/{first.master.sha256[:2]}/{first.master.sha256}.jpg"


def test_the_original_filename_is_kept_for_display_only_without_folders() -> None:
    assert pipeline.clean_filename("C:\\Users\\An\\Ảnh\\sầu riêng.jpg") == "sầu riêng.jpg"
    assert pipeline.clean_filename("../../etc/passwd") == "passwd"
    assert pipeline.clean_filename("") is None


# --- renditions --------------------------------------------------------------------------------------------

SOURCES = {
    "landscape-4:3": (2000, 1500),
    "portrait-3:4": (1500, 2000),
    "panorama-3:1": (2400, 800),
    "square": (1200, 1200),
    "small": (320, 240),
}


@pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())
async def test_every_rendition_meets_its_rule(storage: CountingStorage, source: tuple[int, int]) -> None:
    photo, renditions = await ingest(images.jpeg(images.photo(source)), "p.jpg", storage, RULES)
    outputs = await stored_outputs(storage, photo, renditions)
    for rule, result in zip(RULES, renditions, strict=True):
        data = outputs[rule.purpose]
        image = opened(data)
        width, height = image.size
        assert image.format == rule.output_format.value, rule.purpose
        assert result.mime_type == rule.output_format.mime_type
        assert (result.width, result.height, result.byte_size) == (width, height, len(data))
        assert rule.min_side <= min(width, height), rule.purpose
        assert max(width, height) <= rule.max_side, rule.purpose
        assert len(data) <= rule.max_bytes, rule.purpose
        if rule.square:
            assert width == height, rule.purpose
        if rule.min_aspect is not None and rule.max_aspect is not None:
            assert rule.min_aspect <= width / height <= rule.max_aspect, rule.purpose
        made = width if rule.size_by is SizeBy.width else max(width, height)
        if min(source) >= 1000:  # large enough: made at the target size (or within its tolerance above)
            assert rule.target <= made <= rule.target * (1 + rule.tolerance), rule.purpose


async def test_a_thin_panorama_is_padded_on_white_for_a_square_rule(storage: CountingStorage) -> None:
    photo, renditions = await ingest(images.jpeg(images.photo((2400, 800))), "p.jpg", storage, RULES)
    shopee = opened((await stored_outputs(storage, photo, renditions))["shopee.main"]).convert("RGB")
    assert shopee.size == (1000, 1000)
    assert near(shopee.getpixel((500, 5)), (255, 255, 255), tolerance=3)  # white band above the photo
    assert not near(shopee.getpixel((500, 500)), (255, 255, 255), tolerance=3)


def test_a_tight_byte_limit_lowers_quality_until_the_rendition_fits() -> None:
    image, _ = pipeline.decode_sync(images.jpeg(images.photo((2000, 1500), noise=0.2)), [LAZADA])
    (loose,) = render_sync(image, [LAZADA])
    limit = len(loose.data) * 8 // 10  # the first quality tried is 25 % too large
    (fitted,) = render_sync(image, [dataclasses.replace(LAZADA, purpose="tight", max_bytes=limit)])
    assert len(fitted.data) <= limit
    assert fitted.quality is not None
    assert fitted.quality < LAZADA.quality
    assert (fitted.width, fitted.height) == (loose.width, loose.height)


def test_a_byte_limit_no_quality_can_meet_makes_the_image_smaller() -> None:
    floor = dataclasses.replace(LAZADA, purpose="floor", quality=80, min_quality=80)
    image, _ = pipeline.decode_sync(images.jpeg(images.photo((2000, 1500))), [floor])
    (at_floor,) = render_sync(image, [floor])
    limit = len(at_floor.data) * 6 // 10  # even the lowest allowed quality is too large at full size
    (fitted,) = render_sync(image, [dataclasses.replace(floor, max_bytes=limit)])
    assert len(fitted.data) <= limit
    assert fitted.quality == 80
    assert max(fitted.width, fitted.height) < 1000
    assert min(fitted.width, fitted.height) >= LAZADA.min_side


def test_a_byte_limit_that_cannot_be_met_is_a_clear_error() -> None:
    impossible = dataclasses.replace(LAZADA, purpose="impossible", max_bytes=100)
    image, _ = pipeline.decode_sync(images.jpeg(images.photo((800, 600))), [impossible])
    with pytest.raises(Invalid, match="could not make this photo small enough for impossible"):
        render_sync(image, [impossible])


# --- made once, remade when the photo or the rule changes ---------------------------------------------------


async def test_renditions_are_made_once_and_reused(any_storage: CountingStorage) -> None:
    storage = any_storage
    upload = images.jpeg(images.photo((1600, 1200)))
    photo, first = await ingest(upload, "a.jpg", storage, RULES)
    assert len(storage.puts) == 1 + len(RULES)
    assert not any(r.reused for r in first)

    # Known from the database: no storage call at all, no decoding, no encoding.
    storage.reset()
    again = await render(photo, RULES, storage, known={r.purpose: r for r in first})
    assert (storage.puts, storage.gets) == ([], [])
    assert all(r.reused for r in again)
    assert [dataclasses.replace(r, reused=False) for r in again] == first

    # Not known, but in storage: found by key; the stored photo is never fetched or decoded, nothing written.
    storage.reset()
    found = await render(photo, RULES, storage)
    assert storage.puts == []
    assert photo.storage_key not in storage.gets
    assert [dataclasses.replace(r, reused=False) for r in found] == first

    # The same upload again (a double tap): same keys, nothing new written.
    storage.reset()
    photo_again, _ = await ingest(upload, "a.jpg", storage, RULES)
    assert photo_again.storage_key == photo.storage_key
    assert storage.puts == []


async def test_a_changed_photo_gets_its_own_new_renditions(storage: CountingStorage) -> None:
    _, first = await ingest(images.jpeg(images.photo((1200, 900), seed=1)), "a.jpg", storage, RULES)
    storage.reset()
    _, second = await ingest(images.jpeg(images.photo((1200, 900), seed=2)), "a.jpg", storage, RULES)
    assert len(storage.puts) == 1 + len(RULES)
    assert not any(r.reused for r in second)
    assert {r.storage_key for r in first}.isdisjoint(r.storage_key for r in second)


async def test_only_the_rendition_whose_rule_changed_is_remade(storage: CountingStorage) -> None:
    photo, first = await ingest(images.jpeg(images.photo((1600, 1200))), "a.jpg", storage, RULES)
    changed = dataclasses.replace(LAZADA, target=800, tolerance=Fraction(0))
    rules = [changed if rule.purpose == LAZADA.purpose else rule for rule in RULES]

    storage.reset()
    results = {r.purpose: r for r in await render(photo, rules, storage, known={r.purpose: r for r in first})}

    assert storage.puts == [results["lazada.main"].storage_key]
    assert storage.gets == [photo.storage_key]  # the stored photo, decoded once for the one missing rendition
    assert not results["lazada.main"].reused
    assert max(results["lazada.main"].width, results["lazada.main"].height) == 800
    assert all(r.reused for purpose, r in results.items() if purpose != "lazada.main")


async def test_decoding_and_encoding_run_off_the_event_loop(
    storage: CountingStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    for name in ("decode_sync", "encode_master_sync", "render_sync"):
        original = getattr(pipeline, name)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pipeline, name, spy)

    await ingest(images.jpeg(images.photo((640, 480))), "a.jpg", storage, RULES)

    assert len(threads) == 3
    assert all(name.startswith("media") for name in threads)
    assert threading.current_thread().name not in threads


def test_default_limits_accept_every_phone_s_normal_modes() -> None:
    assert DEFAULT_LIMITS.max_pixels >= 8064 * 6048  # 48 MP iPhone
    assert DEFAULT_LIMITS.max_bytes == 25 * MB
