"""The reference channel: a strict marketplace in memory (or in a file several processes share), implementing the
whole channel port. The sync engine's tests run against it; it is registered like any other channel."""

from agrimarket.channels.reference.adapter import ReferenceAdapter
from agrimarket.channels.reference.market import ORDER_STATUSES, SIGNATURE_HEADER, ReferenceMarket, Shop, WebhookPush
from agrimarket.channels.reference.plugin import ReferencePlugin, default_capabilities
from agrimarket.channels.reference.schemas import ReferenceCredentials, ReferenceSettings
from agrimarket.channels.reference.state import Call, Item, Order, OrderLine, ShopState, Sku

plugin = ReferencePlugin()

__all__ = [
    "ORDER_STATUSES",
    "SIGNATURE_HEADER",
    "Call",
    "Item",
    "Order",
    "OrderLine",
    "ReferenceAdapter",
    "ReferenceCredentials",
    "ReferenceMarket",
    "ReferencePlugin",
    "ReferenceSettings",
    "Shop",
    "ShopState",
    "Sku",
    "WebhookPush",
    "default_capabilities",
    "plugin",
]
