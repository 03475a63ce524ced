"""Stripe, as the storefront speaks to it: stripe-python's ``StripeClient`` on the process's shared HTTP client, an
idempotency key on every call, and Stripe's errors mapped to the channel errors in one place.

Keys come from settings. With no secret key and the demo on, the storefront runs against the local fake of the Stripe
API mounted at ``<public URL>/sandbox/stripe`` (``agrimarket.sandbox.stripe``), in test mode; with neither, there is no
checkout (:func:`stripe_config` answers None).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import stripe

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.config import Settings, get_settings

STRIPE_API = "https://api.stripe.com"
FAKE_PATH = "/sandbox/stripe"
# The demo's fake of the Stripe API: test-mode values, never real secrets.
DEMO_API_KEY = "sk_test_agrimarket_demo"
DEMO_WEBHOOK_SECRET = "whsec_agrimarket_demo_fake"  # noqa: S105


@dataclass(frozen=True)
class StripeConfig:
    api_key: str = ""
    webhook_secret: str | None = None
    api_base: str = STRIPE_API
    timeout_seconds: float = 20.0
    fake: bool = False  # the local fake (the demo): pages say TEST MODE

    @property
    def test_mode(self) -> bool:
        """Test keys or the fake: no real money moves, and the pages say so."""
        return self.fake or self.api_key.startswith(("sk_test_", "rk_test_"))

    def __repr__(self) -> str:  # never a key in a log line
        return f"StripeConfig(api_base={self.api_base!r}, test_mode={self.test_mode}, fake={self.fake})"


def stripe_config(settings: Settings) -> StripeConfig | None:
    """What the storefront pays with; None: card payment is not set up here."""
    if settings.stripe_secret_key is not None:
        secret = settings.stripe_webhook_secret
        return StripeConfig(
            api_key=settings.stripe_secret_key.get_secret_value(),
            webhook_secret=secret.get_secret_value() if secret is not None else None,
            api_base=(settings.stripe_api_base or STRIPE_API).rstrip("/"),
            timeout_seconds=settings.stripe_timeout_seconds,
        )
    if settings.demo_enabled and settings.public_url:
        return StripeConfig(
            api_key=DEMO_API_KEY,
            webhook_secret=DEMO_WEBHOOK_SECRET,
            api_base=f"{settings.public_url}{FAKE_PATH}",
            timeout_seconds=settings.stripe_timeout_seconds,
            fake=True,
        )
    return None


# The adapter factory of a channel plugin is given no settings; the app and the worker say which are in force.
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    global _settings
    _settings = settings


def current_config() -> StripeConfig | None:
    return stripe_config(_settings or get_settings())


@contextmanager
def configured(settings: Settings) -> Iterator[None]:
    global _settings
    previous, _settings = _settings, settings
    try:
        yield
    finally:
        _settings = previous


class _SharedHTTPXClient(stripe.HTTPXClient):
    """stripe-python's httpx client, sending through the process's shared ``httpx.AsyncClient`` (one pool, its
    timeouts; tests give it a transport that reaches the fake in memory)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._client_async = client

    def _get_request_args_kwargs(self, method: str, url: str, headers: Mapping[str, str], post_data: Any) -> list[Any]:
        # The encoded form as the raw body (``content``): httpx deprecates raw bytes passed as ``data``.
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return [args, kwargs]


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    amount_vnd: int


class StripeGateway:
    def __init__(self, config: StripeConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        # Our own idempotency keys make a retry safe; the library's retries would only hide a slow Stripe.
        self.client = stripe.StripeClient(
            config.api_key,
            base_addresses={"api": config.api_base},
            http_client=_SharedHTTPXClient(http, config.timeout_seconds),
            max_network_retries=0,
        )

    async def create_session(self, params: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params=dict(params),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            _raise(exc)
        return _plain(session)

    async def session(self, session_id: str) -> dict[str, Any]:
        try:
            return _plain(await self.client.v1.checkout.sessions.retrieve_async(session_id))
        except stripe.StripeError as exc:
            _raise(exc)

    async def sessions_of_payment(self, payment_intent_id: str) -> list[dict[str, Any]]:
        try:
            found = await self.client.v1.checkout.sessions.list_async(params={"payment_intent": payment_intent_id})
        except stripe.StripeError as exc:
            _raise(exc)
        return [_plain(session) for session in found.data]

    async def expire_session(self, session_id: str, *, idempotency_key: str) -> dict[str, Any] | None:
        """Expire an open session; None when it is not open any more (paid or expired already)."""
        try:
            return _plain(
                await self.client.v1.checkout.sessions.expire_async(
                    session_id, options={"idempotency_key": idempotency_key}
                )
            )
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 400:
                return None
            _raise(exc)
        except stripe.StripeError as exc:
            _raise(exc)

    async def refund(
        self, payment_intent_id: str, *, idempotency_key: str, metadata: Mapping[str, str], reason: str | None = None
    ) -> RefundResult:
        """Refund what is left of the payment."""
        params: dict[str, Any] = {"payment_intent": payment_intent_id, "metadata": dict(metadata)}
        if reason:
            params["reason"] = reason
        try:
            refund = await self.client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            _raise(exc)
        return RefundResult(refund.id, int(refund.amount))

    async def refunded_vnd(self, payment_intent_id: str) -> int:
        """What has been refunded of the payment so far (succeeded or pending refunds)."""
        try:
            found = await self.client.v1.refunds.list_async(params={"payment_intent": payment_intent_id, "limit": 100})
        except stripe.StripeError as exc:
            _raise(exc)
        return sum(int(r.amount) for r in found.data if r.status in ("succeeded", "pending"))

    def verify(self, payload: bytes, signature: str, secret: str) -> None:
        """Stripe's documented scheme over the raw body (raises ``stripe.SignatureVerificationError``)."""
        self.client.construct_event(payload, signature, secret)


def _plain(obj: Any) -> dict[str, Any]:
    value: dict[str, Any] = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return value


def _raise(exc: stripe.StripeError) -> NoReturn:
    raise mapped(exc) from exc


def mapped(exc: stripe.StripeError) -> ChannelError:
    """Stripe's errors as the channel errors the pipeline acts on."""
    message = (exc.user_message or str(exc) or "Stripe refused the request.")[:500]
    code = exc.code
    status = exc.http_status
    if isinstance(exc, stripe.RateLimitError):
        return RateLimited(message, code=code, status=status)
    if isinstance(exc, stripe.APIConnectionError | stripe.APIError) or (status is not None and status >= 500):
        return Retryable(message, code=code, status=status)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return AuthExpired(message, code=code, status=status)
    if status == 404:
        return ChannelNotFound(message, code=code, status=status)
    field = exc.param if isinstance(exc, stripe.InvalidRequestError) else None
    return Rejected(message, code=code, status=status, field=field)


def gateway(http: httpx.AsyncClient, config: StripeConfig | None = None) -> StripeGateway:
    """The storefront's Stripe (the configuration in force unless one is given); raises Rejected when card payment is
    not set up here."""
    config = config or current_config()
    if config is None:
        raise Rejected("Card payment is not set up on this server (no Stripe keys).", code="stripe_not_configured")
    return StripeGateway(config, http)


def idempotency_key(*parts: object) -> str:
    """``agrimarket-<what>-<ids>``: the same operation on the same object always sends the same key."""
    return "agrimarket-" + "-".join(str(part) for part in parts)


def metadata(values: Mapping[str, object]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}
