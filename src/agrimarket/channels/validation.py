"""A listing checked against the channel's declared limits before anything is sent: pure, no I/O.

The API runs it when a farmer publishes or changes a listing, and the sync engine again at push time (the
catalogue may have changed in between). Every problem is collected, so the farmer fixes them all in one go.

Fields name what to fix: ``title``, ``description``, ``category``, ``images``, ``variants``,
``variants.<i>.price_vnd`` / ``.stock`` / ``.sku`` / ``.weight_grams``, ``attributes.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agrimarket.channels.base import Capabilities, VariantDraft
from agrimarket.kit.money import format_vnd


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def check_listing(
    capabilities: Capabilities,
    *,
    title: str,
    description: str,
    category: str | None,
    attributes: Mapping[str, str],
    variants: Sequence[VariantDraft],
    image_count: int,
) -> list[Problem]:
    """Every way this listing breaks the channel's rules; empty when it may be sent."""
    channel = capabilities.display_name
    limits = capabilities.limits
    required = capabilities.required_fields
    problems: list[Problem] = []

    def problem(field: str, message: str) -> None:
        problems.append(Problem(field, message))

    title = title.strip()
    if not title:
        problem("title", f"{channel} needs a title: give the product a name, or give this listing its own title.")
    elif len(title) < limits.title_min:
        problem(
            "title",
            f"{channel} needs a title of at least {limits.title_min} characters; this one has {len(title)}. "
            "Lengthen the product's name, or give this listing its own title.",
        )
    elif len(title) > limits.title_max:
        problem(
            "title",
            f"{channel} takes a title of at most {limits.title_max} characters; this one has {len(title)}. "
            "Shorten the product's name, or give this listing its own shorter title.",
        )

    if "description" in required and not description.strip():
        problem(
            "description",
            f"{channel} needs a description: write one for the product, or give this listing its own.",
        )
    elif len(description) > limits.description_max:
        problem(
            "description",
            f"{channel} takes a description of at most {limits.description_max} characters; this one has "
            f"{len(description)}. Shorten it, or give this listing its own shorter description.",
        )

    if "category" in required and not category:
        problem("category", missing_category(capabilities))

    images_min = max(limits.images_min, 1 if "images" in required else 0)
    if image_count < images_min:
        needed = "a photo" if images_min == 1 else f"at least {images_min} photos"
        problem("images", f"{channel} needs {needed} of the product; it has {image_count}. Add photos to the product.")
    elif image_count > limits.images_max:
        problem(
            "images",
            f"{channel} shows at most {limits.images_max} photos of a product; this one has {image_count}. "
            "Remove some of the product's photos.",
        )

    for name in sorted(f.removeprefix("attributes.") for f in required if f.startswith("attributes.")):
        if not (attributes.get(name) or "").strip():
            problem(
                f"attributes.{name}",
                f"{channel} needs the attribute “{name}” for this product: add it to this listing's attributes.",
            )

    if not variants:
        problem("variants", "There is no variant on sale to list: add a variant to the product, or restore one.")
    elif len(variants) > limits.variants_max:
        problem(
            "variants",
            f"{channel} takes at most {limits.variants_max} variants in one product; this one has {len(variants)}. "
            "Archive some variants, or split the product in two.",
        )

    for i, variant in enumerate(variants):
        if len(variant.sku) > limits.sku_max:
            problem(
                f"variants.{i}.sku",
                f"{channel} takes SKUs of at most {limits.sku_max} characters; {variant.sku} has {len(variant.sku)}. "
                "Give the variant a shorter SKU.",
            )
        if not limits.price_min_vnd <= variant.price_vnd <= limits.price_max_vnd:
            problem(
                f"variants.{i}.price_vnd",
                f"{channel} takes prices from {format_vnd(limits.price_min_vnd)} to "
                f"{format_vnd(limits.price_max_vnd)}; {variant.sku} would be {format_vnd(variant.price_vnd)}. "
                "Change the variant's price, or this listing's price rule.",
            )
        if variant.stock > limits.stock_max:
            problem(
                f"variants.{i}.stock",
                f"{channel} takes at most {_count(limits.stock_max)} in stock per SKU; {variant.sku} would offer "
                f"{_count(variant.stock)}. Set a maximum in this listing's stock rule.",
            )
        if "weight" in required and variant.weight_grams <= 0:
            problem(
                f"variants.{i}.weight_grams",
                f"{channel} needs the shipping weight of every variant; {variant.sku} has none. Enter it in grams.",
            )
    return problems


def missing_category(capabilities: Capabilities, catalog_category: str | None = None) -> str:
    """What to say when the channel needs a category and the listing has none; naming the product's own
    category (``fruit``) when known, since mapping it on the connection fixes every product of that kind."""
    channel = capabilities.display_name
    mapped = f"map “{catalog_category}”" if catalog_category else "map the product's category"
    return (
        f"{channel} needs a category: choose one for this product, or {mapped} to a {channel} category "
        "on the connection."
    )


def _count(n: int) -> str:
    return f"{n:,}".replace(",", ".")  # vi-VN grouping, as prices are written
