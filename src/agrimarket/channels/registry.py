"""Channel plugins, loaded once from the entry-point group ``agrimarket.channels``.

Built-in channels register through the same group (see ``pyproject.toml``), so a third-party distribution adds a
marketplace exactly the way ours do. One plugin that fails to load is logged and recorded, never fatal; a second
plugin with a name already taken is refused (a built-in keeps its name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from agrimarket.channels.base import ChannelPlugin
from agrimarket.errors import NotFound
from agrimarket.media.rules import DEFAULT_RULES
from agrimarket.observability import get_logger

log = get_logger(__name__)

GROUP = "agrimarket.channels"
BUILTIN_DISTRIBUTION = "agrimarket"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")


@dataclass(frozen=True)
class PluginFailure:
    entry_point: str  # "name = module:attr"
    distribution: str | None
    error: str


@dataclass
class ChannelRegistry:
    plugins: dict[str, ChannelPlugin] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def get(self, name: str) -> ChannelPlugin:
        plugin = self.plugins.get(name)
        if plugin is None:
            known = ", ".join(sorted(self.plugins)) or "none"
            raise NotFound(f"There is no channel called {name!r}. Channels available here: {known}.", field="channel")
        return plugin

    def __contains__(self, name: object) -> bool:
        return name in self.plugins

    @property
    def names(self) -> list[str]:
        return sorted(self.plugins)

    def add(self, plugin: ChannelPlugin) -> None:
        """Register a plugin by hand (tests, embedding). Same rules as for entry points."""
        _check(plugin, plugin.name)
        if plugin.name in self.plugins and self.plugins[plugin.name] is not plugin:
            raise ValueError(f"A channel named {plugin.name!r} is already registered.")
        self.plugins[plugin.name] = plugin


def _distribution(entry_point: EntryPoint) -> str | None:
    dist = entry_point.dist
    return dist.metadata["Name"] if dist is not None else None


def _check(plugin: object, name: str) -> ChannelPlugin:
    for attribute in ("name", "capabilities", "credentials_schema", "settings_schema", "adapter", "shop_id"):
        if not hasattr(plugin, attribute):
            raise TypeError(f"the object has no {attribute!r}: it is not a channel plugin")
    if not NAME_PATTERN.match(name):
        raise ValueError(f"channel name {name!r} must be 2-40 lower-case letters, digits or _")
    plugin_name = plugin.name  # type: ignore[attr-defined]
    if plugin_name != name:
        raise ValueError(f"the entry point is called {name!r} but the plugin says it is {plugin_name!r}")
    if plugin.capabilities.name != name:  # type: ignore[attr-defined]
        raise ValueError(f"the plugin {name!r} declares capabilities for {plugin.capabilities.name!r}")  # type: ignore[attr-defined]
    image_rule = plugin.capabilities.image_rule  # type: ignore[attr-defined]
    if image_rule is not None and image_rule not in DEFAULT_RULES:
        # Else the engine would quietly send the stored photo instead of the rendition the channel needs.
        known = ", ".join(sorted(DEFAULT_RULES))
        raise ValueError(f"the plugin {name!r} asks for image rule {image_rule!r}; the media rules are: {known}")
    return plugin  # type: ignore[return-value]


def load(points: Iterable[EntryPoint] | None = None) -> ChannelRegistry:
    """Load every plugin of the group. Built-ins first, so a third-party plugin cannot take a built-in's name."""
    found = list(entry_points(group=GROUP) if points is None else points)
    found.sort(key=lambda ep: (_distribution(ep) != BUILTIN_DISTRIBUTION, ep.name, _distribution(ep) or ""))
    registry = ChannelRegistry()
    origin: dict[str, str | None] = {}
    for entry_point in found:
        dist = _distribution(entry_point)
        label = f"{entry_point.name} = {entry_point.value}"
        if entry_point.name in registry.plugins:
            error = f"the channel name {entry_point.name!r} is already taken by {origin[entry_point.name] or 'another'}"
            log.error("channel_plugin_refused", entry_point=label, distribution=dist, error=error)
            registry.failures.append(PluginFailure(label, dist, error))
            continue
        try:
            loaded = entry_point.load()
            plugin = _check(loaded() if isinstance(loaded, type) else loaded, entry_point.name)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("channel_plugin_failed", entry_point=label, distribution=dist, error=error)
            registry.failures.append(PluginFailure(label, dist, error))
            continue
        registry.plugins[entry_point.name] = plugin
        origin[entry_point.name] = dist
    log.debug("channel_plugins_loaded", channels=registry.names, failed=len(registry.failures))
    return registry


@lru_cache(maxsize=1)
def channels() -> ChannelRegistry:
    """The process's registry, loaded on first use."""
    return load()
