"""Optional bases for our own plugins: what every in-tree plugin declared the same way.

The contract stays :class:`~agrimarket.channels.base.ChannelPlugin` (a Protocol): a third-party plugin satisfies it on
its own and need not import anything from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel

from agrimarket.channels.base import Capabilities
from agrimarket.channels.errors import Rejected


class PluginBase:
    """A plugin's name and capabilities (given per instance), its credentials and settings schemas (per class), and
    its shop id: the credentials' ``shop_id_key``, as text. Subclasses add ``adapter()``."""

    credentials_model: ClassVar[type[BaseModel]]
    settings_model: ClassVar[type[BaseModel]]
    shop_id_key: ClassVar[str] = "shop_id"

    def __init__(self, name: str, capabilities: Capabilities) -> None:
        self._name = name
        self._capabilities = capabilities

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def credentials_schema(self) -> type[BaseModel]:
        return self.credentials_model

    @property
    def settings_schema(self) -> type[BaseModel]:
        return self.settings_model

    def shop_id(self, credentials: Mapping[str, Any]) -> str | None:
        value = credentials.get(self.shop_id_key)
        return str(value) if value else None


class App(Protocol):
    """AgriMarket's own app on a marketplace (its keys for the authorisation flow), configured or not."""

    @property
    def configured(self) -> bool: ...


AppT = TypeVar("AppT", bound=App)


class AppPlugin(PluginBase, Generic[AppT]):
    """A plugin that connects by authorisation with AgriMarket's app: the one given, or else one read from the
    environment when first needed (``load_app``). ``app_missing`` says which settings to set when it is not
    configured."""

    app_missing: ClassVar[str]

    def __init__(self, name: str, capabilities: Capabilities, app: AppT | None, load_app: Callable[[], AppT]) -> None:
        super().__init__(name, capabilities)
        self._app = app
        self._load_app = load_app

    @property
    def app(self) -> AppT:
        if self._app is None:
            self._app = self._load_app()
        return self._app

    def _configured_app(self) -> AppT:
        app = self.app
        if not app.configured:
            raise Rejected(self.app_missing, code="app_missing")
        return app
