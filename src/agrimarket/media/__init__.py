"""Photos: upload checks, normalisation, per-channel renditions, and where the bytes are stored."""

from agrimarket.media.pipeline import (
    DEFAULT_LIMITS,
    MediaLimits,
    NormalisedImage,
    RenditionResult,
    ingest,
    read_capped,
    render,
    rendition_key,
)
from agrimarket.media.rules import CHANNEL_RULES, DEFAULT_RULES, WEB_RULES, ImageRule, OutputFormat
from agrimarket.media.storage import LocalFile, LocalStorage, ObjectStorage, RemoteUrl, Storage, storage_for

__all__ = [
    "CHANNEL_RULES",
    "DEFAULT_LIMITS",
    "DEFAULT_RULES",
    "WEB_RULES",
    "ImageRule",
    "LocalFile",
    "LocalStorage",
    "MediaLimits",
    "NormalisedImage",
    "ObjectStorage",
    "OutputFormat",
    "RemoteUrl",
    "RenditionResult",
    "Storage",
    "ingest",
    "read_capped",
    "render",
    "rendition_key",
    "storage_for",
]
