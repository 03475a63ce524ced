"""Shopee Open Platform v2: the adapter (signing, listings, stock and price batches, orders, fulfilment, pushes,
token refresh) and connect-by-authorisation. Its sandbox twin is :mod:`agrimarket.sandbox.shopee`."""

from agrimarket.channels.shopee.adapter import ShopeeAdapter
from agrimarket.channels.shopee.auth import ShopeeAuth, public_base, shop_base, sign
from agrimarket.channels.shopee.client import ShopeeClient, error_for
from agrimarket.channels.shopee.plugin import ShopeePlugin, default_capabilities
from agrimarket.channels.shopee.schemas import ShopeeApp, ShopeeCredentials, ShopeeSettings
from agrimarket.channels.shopee.webhooks import push_signature

plugin = ShopeePlugin()

__all__ = [
    "ShopeeAdapter",
    "ShopeeApp",
    "ShopeeAuth",
    "ShopeeClient",
    "ShopeeCredentials",
    "ShopeePlugin",
    "ShopeeSettings",
    "default_capabilities",
    "error_for",
    "plugin",
    "public_base",
    "push_signature",
    "shop_base",
    "sign",
]
