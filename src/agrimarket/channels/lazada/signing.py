"""Lazada's two signatures: the request signature every API call carries, and the push signature on webhooks.

Request (LZ-G developers-guide/signature-algorithm.md): the API path, then every system and business parameter as
``key + value`` sorted by key, no separators, ``sign`` and file parameters left out; HMAC-SHA256 keyed with the app
secret, UPPERCASE hex. Push (lazada-push-mechanism.md): ``Authorization`` = hex HMAC-SHA256(app_secret,
app_key + raw body).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Generator, Mapping
from urllib.parse import parse_qsl

import httpx

SIGN_METHOD = "sha256"
FORM = "application/x-www-form-urlencoded"

Clock = Callable[[], float]


def sign(app_secret: str, api_path: str, params: Mapping[str, str]) -> str:
    """The request signature over ``api_path`` and ``params`` (which must not hold ``sign`` or file parameters)."""
    message = api_path + "".join(key + params[key] for key in sorted(params))
    return hmac.new(app_secret.encode(), message.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def push_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """The ``Authorization`` header of a push: lowercase hex, as Lazada's Java sample computes it."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def api_path(url: httpx.URL, base_path: str) -> str:
    """The path the signature covers: the request's path below the gateway's base (``/rest``, or a sandbox mounted
    under a prefix), exactly as called, trailing slash included."""
    path = url.path
    base = base_path.rstrip("/")
    if base and path.startswith(base + "/"):
        return path[len(base) :]
    return path


class LazadaAuth(httpx.Auth):
    """Adds the system parameters (``app_key``, ``timestamp`` in ms, ``sign_method``, ``access_token`` if any) to the
    query string and signs them with the business parameters found in the query and in a form-encoded body.

    A multipart body (``/image/upload``) carries only the file, which the signature leaves out; every other
    parameter of such a call goes in the query string.
    """

    requires_request_body = True

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        *,
        base_path: str,
        access_token: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.base_path = base_path
        self.access_token = access_token
        self.clock = clock

    def system_params(self) -> dict[str, str]:
        params = {"app_key": self.app_key, "timestamp": str(round(self.clock() * 1000)), "sign_method": SIGN_METHOD}
        if self.access_token:
            params["access_token"] = self.access_token
        return params

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        system = self.system_params()
        signed = {key: value for key, value in request.url.params.multi_items() if key != "sign"}
        signed.update(system)
        if request.headers.get("content-type", "").split(";")[0].strip() == FORM:
            signed.update(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))
        system["sign"] = sign(self.app_secret, api_path(request.url, self.base_path), signed)
        request.url = request.url.copy_merge_params(system)
        yield request
