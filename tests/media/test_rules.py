from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from agrimarket.media.pipeline import DEFAULT_LIMITS, Plan, plan, rendition_key, working_size_needed
from agrimarket.media.rules import (
    CHANNEL_RULES,
    DEFAULT_RULES,
    LAZADA,
    MB,
    SHOPEE,
    TIKI,
    TIKTOK,
    WEB_320,
    Fit,
    ImageRule,
    OutputFormat,
)


def test_every_builtin_channel_has_a_main_image_rule_and_web_thumbnails_exist() -> None:
    assert set(CHANNEL_RULES) == {"shopee", "lazada", "tiktok", "tiki"}
    assert {"web.160", "web.320", "web.640"} <= set(DEFAULT_RULES)
    assert all(purpose == rule.purpose for purpose, rule in DEFAULT_RULES.items())


def test_documented_marketplace_limits_are_in_the_table() -> None:
    assert (SHOPEE.square, SHOPEE.max_bytes, SHOPEE.output_format) == (True, 10 * MB, OutputFormat.jpeg)
    assert (LAZADA.min_side, LAZADA.max_side, LAZADA.max_bytes) == (330, 5000, 1 * MB)
    assert (TIKTOK.min_side, TIKTOK.max_side, TIKTOK.max_bytes) == (300, 4000, 10 * MB)
    assert (TIKTOK.min_aspect, TIKTOK.max_aspect) == (Fraction(3, 4), Fraction(4, 3))


def test_values_the_platforms_do_not_document_are_marked_as_our_choice() -> None:
    assert TIKI.stated_default
    assert "documents no image rules" in TIKI.note
    assert SHOPEE.stated_default  # pixel bounds UNCONFIRMED
    assert not LAZADA.stated_default
    assert not TIKTOK.stated_default
    assert all(rule.stated_default for purpose, rule in DEFAULT_RULES.items() if purpose.startswith("web."))


def test_an_inconsistent_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="min_side <= target <= max_side"):
        ImageRule("x", min_side=500, max_side=400, target=450, max_bytes=MB, formats=(OutputFormat.jpeg,))
    with pytest.raises(ValueError, match="both aspect bounds"):
        ImageRule("x", 1, 10, 5, MB, (OutputFormat.jpeg,), min_aspect=Fraction(1, 2))


def test_the_fingerprint_changes_with_anything_that_shapes_the_output_and_not_with_notes() -> None:
    assert dataclasses.replace(LAZADA, note="reworded").fingerprint == LAZADA.fingerprint
    assert dataclasses.replace(LAZADA, target=900).fingerprint != LAZADA.fingerprint
    assert dataclasses.replace(LAZADA, quality=80).fingerprint != LAZADA.fingerprint
    assert rendition_key("ab" * 32, LAZADA) != rendition_key("cd" * 32, LAZADA)


@pytest.mark.parametrize(
    ("source", "rule", "expected"),
    [
        # a 12 MP photo: square on white for Shopee, its own shape for Lazada and TikTok
        ((4000, 3000), SHOPEE, Plan(canvas=(1000, 1000), content=(1000, 750))),
        ((4000, 3000), LAZADA, Plan(canvas=(1000, 750), content=(1000, 750))),
        ((3000, 4000), TIKTOK, Plan(canvas=(750, 1000), content=(750, 1000))),
        # a panorama is outside TikTok's 3:4..4:3, so it is squared (padded)
        ((3000, 1000), TIKTOK, Plan(canvas=(1000, 1000), content=(1000, 333))),
        # a panorama too thin for Lazada's 330 px minimum is padded up to it, not stretched
        ((4000, 200), LAZADA, Plan(canvas=(1000, 330), content=(1000, 50))),
        # a small photo is enlarged only as far as the rule's minimum demands
        ((400, 300), SHOPEE, Plan(canvas=(500, 500), content=(500, 375))),
        ((400, 300), LAZADA, Plan(canvas=(440, 330), content=(440, 330))),
        ((1000, 800), LAZADA, Plan(canvas=(1000, 800), content=(1000, 800))),
        # a photo already within 10 % above the target keeps its own size (no resample)
        ((1008, 756), LAZADA, Plan(canvas=(1008, 756), content=(1008, 756))),
        ((1200, 900), LAZADA, Plan(canvas=(1000, 750), content=(1000, 750))),
        # thumbnails are sized by width and keep the photo's shape
        ((3000, 4000), WEB_320, Plan(canvas=(320, 427), content=(320, 427))),
        ((200, 150), WEB_320, Plan(canvas=(200, 150), content=(200, 150))),
    ],
)
def test_plan(source: tuple[int, int], rule: ImageRule, expected: Plan) -> None:
    assert plan(source, rule) == expected


def test_crop_fit_fills_the_frame() -> None:
    square_crop = dataclasses.replace(SHOPEE, fit=Fit.crop)
    assert plan((4000, 3000), square_crop) == Plan(canvas=(1000, 1000), content=(1333, 1000))


def test_the_working_size_covers_the_largest_rendition_and_the_stored_photo() -> None:
    rules = list(DEFAULT_RULES.values())
    assert working_size_needed((4000, 3000), rules, DEFAULT_LIMITS) == (1000, 750)
    assert working_size_needed((3000, 4000), [WEB_320], DEFAULT_LIMITS) == (750, 1000)
    assert working_size_needed((600, 400), rules, DEFAULT_LIMITS) == (600, 400)
