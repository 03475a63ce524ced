"""Request and response bodies for product photos."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PhotoOrder(BaseModel):
    """The product's photos in their new order: each of them exactly once, the main image first."""

    model_config = ConfigDict(extra="forbid")

    photo_ids: list[uuid.UUID] = Field(max_length=500)


class ImageOut(BaseModel):
    """One stored image. ``url`` is content-addressed: it never changes meaning and may be cached forever."""

    url: str = Field(examples=["/media/renditions/3f/3f9c…/web.320-1a2b3c4d5e6f7a8b.webp"])
    width: int
    height: int
    mime_type: str
    byte_size: int


class PhotoOut(BaseModel):
    """A product photo: upright, sRGB, stripped of all metadata (no EXIF, no GPS); the original is not kept."""

    id: uuid.UUID
    product_id: uuid.UUID | None
    variant_id: uuid.UUID | None
    position: int = Field(description="0 is the main image on every channel.")
    width: int
    height: int
    mime_type: str
    url: str = Field(description="The normalised photo itself.")
    original_filename: str | None
    created_at: datetime
    thumbnails: list[ImageOut] = Field(description="WebP thumbnails for the web, narrowest first (for `srcset`).")
    renditions: dict[str, ImageOut] = Field(
        description="What each channel is sent, by purpose (`shopee.main`, `lazada.main`, …)."
    )
