"""The Acme marketplace: a channel plugin in its own distribution, speaking only the core's public port."""

from .plugin import AcmeAdapter, AcmePlugin, plugin

__all__ = ["AcmeAdapter", "AcmePlugin", "plugin"]
