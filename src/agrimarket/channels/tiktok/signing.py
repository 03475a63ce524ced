"""TikTok Shop's two signatures (marketplaces.md §3.2, §3.4): the request signature every Partner API call carries,
and the ``Authorization`` header of a webhook.

Request: ``app_secret + path + k1v1k2v2… (query sorted by key, without sign and access_token) + body + app_secret``,
HMAC-SHA256 keyed with the app secret, lowercase hex. The body is the exact bytes sent, and is left out of a
multipart request (an image upload). ``path`` is the path *relative to the configured base URL*, so an adapter
pointed at a sandbox mounted under a prefix (``http://host/sandbox/tiktok``) signs what the platform checks.

Webhook: ``HMAC-SHA256(app_secret, app_key + raw body)``, lowercase hex, no timestamp (dedupe on
``tts_notification_id``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Generator, Mapping

import httpx

Clock = Callable[[], float]

ACCESS_TOKEN_HEADER = "x-tts-access-token"  # noqa: S105 - a header name
UNSIGNED = frozenset({"sign", "access_token"})


def sign(app_secret: str, path: str, query: Mapping[str, str], body: bytes = b"") -> str:
    """The ``sign`` query parameter for a call to ``path`` with ``query`` (``sign``/``access_token`` are skipped)
    and ``body`` (pass ``b""`` for a multipart request)."""
    message = path.encode() + "".join(k + query[k] for k in sorted(query) if k not in UNSIGNED).encode() + body
    wrapped = app_secret.encode() + message + app_secret.encode()
    return hmac.new(app_secret.encode(), wrapped, hashlib.sha256).hexdigest()


def webhook_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """The ``Authorization`` header TikTok Shop sends with a push."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def api_path(url_path: str, prefix: str) -> str:
    """The path TikTok signs: the URL's path below the base URL's own path (a sandbox's mount prefix)."""
    prefix = prefix.rstrip("/")
    if prefix and url_path.startswith(prefix + "/"):
        return url_path[len(prefix) :]
    return url_path


def is_multipart(request: httpx.Request) -> bool:
    content_type: str = request.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


class TikTokAuth(httpx.Auth):
    """Adds ``app_key``, ``timestamp`` (Unix seconds) and, for shop APIs, ``shop_cipher`` to the query, signs
    query and body, and sends the access token in ``x-tts-access-token``. ``prefix`` is the base URL's path."""

    requires_request_body = True

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        *,
        prefix: str = "",
        access_token: str | None = None,
        shop_cipher: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.app_key = app_key
        self._app_secret = app_secret
        self.prefix = prefix
        self.access_token = access_token
        self.shop_cipher = shop_cipher
        self.clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        common = {"app_key": self.app_key, "timestamp": str(int(self.clock()))}
        if self.shop_cipher:
            common["shop_cipher"] = self.shop_cipher
        url = request.url.copy_merge_params(common)
        query = {k: v for k, v in url.params.multi_items() if k != "sign"}
        body = b"" if is_multipart(request) else request.content
        request.url = url.copy_merge_params(
            {"sign": sign(self._app_secret, api_path(url.path, self.prefix), query, body)}
        )
        if self.access_token:
            request.headers[ACCESS_TOKEN_HEADER] = self.access_token
        yield request
