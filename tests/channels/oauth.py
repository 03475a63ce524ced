"""A marketplace with an authorisation page, for tests: the reference market connected the way Lazada or Shopee
shops are, and the platform's side (one-time codes, a token endpoint reached through the injected HTTP client)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from agrimarket.channels.base import AuthorizationRequest
from agrimarket.channels.http import error_for_status
from agrimarket.channels.reference import ReferencePlugin

CHANNEL = "oauthref"
PLATFORM = "https://market.test"
REFUSAL = "Mã ủy quyền không hợp lệ hoặc đã được dùng"


@dataclass
class Platform:
    """The marketplace's side: an authorisation page that grants one-time codes, and a token endpoint."""

    codes: dict[str, str] = field(default_factory=dict)  # code → shop id, until used
    redirects: dict[str, str] = field(default_factory=dict)  # code → the redirect URI it was granted for
    exchanged_with: list[str] = field(default_factory=list)  # redirect URIs the token endpoint was given
    down: bool = False

    def grant(self, authorization_url: str, shop_id: str) -> str:
        """The seller authorises: the platform sends the browser back to our redirect URI with a code."""
        query = dict(parse_qsl(urlsplit(authorization_url).query))
        assert query["client_id"] == "agrimarket-app"
        code = f"code-{uuid.uuid4().hex[:12]}"
        self.codes[code] = shop_id
        self.redirects[code] = query["redirect"]
        return back_from(query["redirect"], code=code, shop_id=shop_id)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, json={"message": "Hệ thống đang bảo trì"})
        body = json.loads(request.content)
        self.exchanged_with.append(body["redirect_uri"])
        shop_id = self.codes.pop(body["code"], None)
        if shop_id is None or self.redirects[body["code"]] != body["redirect_uri"]:
            return httpx.Response(400, json={"message": REFUSAL})
        token = uuid.uuid4().hex[:10]
        return httpx.Response(200, json={"shop_id": shop_id, "access_token": f"at-{token}", "refresh_token": "rt"})


class OAuthReferencePlugin(ReferencePlugin):
    """The reference market, connected through an authorisation page the way Lazada or Shopee shops are."""

    def __init__(self) -> None:
        super().__init__(name=CHANNEL)
        self.requests: list[AuthorizationRequest] = []

    def authorization_url(self, request: AuthorizationRequest) -> str:
        self.requests.append(request)
        return f"{PLATFORM}/authorize?" + urlencode({"client_id": "agrimarket-app", "redirect": request.redirect_uri})

    async def exchange_code(
        self, callback: Mapping[str, str], request: AuthorizationRequest, http: httpx.AsyncClient
    ) -> Mapping[str, Any]:
        response = await http.post(
            f"{PLATFORM}/token", json={"code": callback["code"], "redirect_uri": request.redirect_uri}
        )
        if (error := error_for_status(response)) is not None:
            raise error
        answer: dict[str, Any] = response.json()
        return answer


def back_from(redirect: str, **params: str) -> str:
    """The callback as our app sees it: the redirect URI's path and query, with the platform's parameters added."""
    parts = urlsplit(redirect)
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:8000"  # public_base_url, derived in development
    query = parts.query + ("&" + urlencode(params) if params else "")
    return f"{parts.path}?{query}"
