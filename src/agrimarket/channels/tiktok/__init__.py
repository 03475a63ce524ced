"""TikTok Shop Partner API (202309+): the adapter (signing, listings, stock and price per product, orders,
fulfilment, webhooks, token refresh) and connect-by-authorisation. Its sandbox twin is
:mod:`agrimarket.sandbox.tiktok`."""

from agrimarket.channels.tiktok.adapter import TikTokAdapter
from agrimarket.channels.tiktok.client import TikTokClient, error_for
from agrimarket.channels.tiktok.plugin import CAPABILITIES, TikTokPlugin
from agrimarket.channels.tiktok.schemas import TikTokApp, TikTokCredentials, TikTokSettings
from agrimarket.channels.tiktok.signing import TikTokAuth, sign, webhook_signature

plugin = TikTokPlugin()

__all__ = [
    "CAPABILITIES",
    "TikTokAdapter",
    "TikTokApp",
    "TikTokAuth",
    "TikTokClient",
    "TikTokCredentials",
    "TikTokPlugin",
    "TikTokSettings",
    "error_for",
    "plugin",
    "sign",
    "webhook_signature",
]
