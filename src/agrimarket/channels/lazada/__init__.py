"""Lazada Open Platform: the adapter, its request and push signing, and the plugin the registry loads."""

from agrimarket.channels.lazada.adapter import LazadaAdapter
from agrimarket.channels.lazada.plugin import CAPABILITIES, LazadaPlugin
from agrimarket.channels.lazada.schemas import LazadaApp, LazadaCredentials, LazadaSettings
from agrimarket.channels.lazada.signing import LazadaAuth, push_signature, sign

plugin = LazadaPlugin()

__all__ = [
    "CAPABILITIES",
    "LazadaAdapter",
    "LazadaApp",
    "LazadaAuth",
    "LazadaCredentials",
    "LazadaPlugin",
    "LazadaSettings",
    "plugin",
    "push_signature",
    "sign",
]
