"""Tiki Open API: the adapter (product requests under review, updateSkus, orders, the event queue), its OAuth 2
client, and the plugin the registry loads."""

from agrimarket.channels.tiki.adapter import AppCache, TikiAdapter, review_message
from agrimarket.channels.tiki.plugin import CAPABILITIES, TikiPlugin
from agrimarket.channels.tiki.schemas import TikiApp, TikiCredentials, TikiSettings

plugin = TikiPlugin()

__all__ = [
    "CAPABILITIES",
    "AppCache",
    "TikiAdapter",
    "TikiApp",
    "TikiCredentials",
    "TikiPlugin",
    "TikiSettings",
    "plugin",
    "review_message",
]
