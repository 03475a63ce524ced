"""TikTok Shop's request and webhook signatures: the vectors of marketplaces.md §3.2 and §3.4, and the Auth that
signs what is sent."""

from __future__ import annotations

import json

import httpx
import pytest

from agrimarket.channels.errors import InvalidSignature
from agrimarket.channels.tiktok import TikTokAuth, sign, webhook_signature
from agrimarket.channels.tiktok.webhooks import verify

SECRET = "abc000def111"
WEBHOOK_BODY = json.dumps(
    {
        "type": 1,
        "tts_notification_id": "7327112393057371910",
        "shop_id": "7494049642642441621",
        "timestamp": 1644412885,
        "data": {
            "order_id": "576486316948490001",
            "order_status": "UNPAID",
            "is_on_hold_order": False,
            "update_time": 1644412885,
        },
    },
    separators=(",", ":"),
).encode()


def test_the_get_vector() -> None:
    query = {"app_key": "123456", "timestamp": "1234567890"}
    assert sign(SECRET, "/authorization/202309/shops", query) == (
        "c8767e4fd7a1b48a0ce3fd23197f058159ce11b53f1ae1ad6d1ec931a1da5540"
    )


def test_the_post_vector_signs_the_body() -> None:
    query = {"app_key": "123456", "timestamp": "1234567890", "shop_cipher": "ROW_abc"}
    body = b'{"skus":[{"id":"1","inventory":[{"warehouse_id":"7","quantity":10}]}]}'
    path = "/product/202309/products/1729592969712207000/inventory/update"
    assert sign(SECRET, path, query, body) == "343c6ac3c31d5b6ce758114db8f684c427b735b741d937b5113abef0e8a89f5c"


def test_sign_and_access_token_are_left_out_and_order_does_not_matter() -> None:
    query = {"timestamp": "1234567890", "app_key": "123456"}
    expected = sign(SECRET, "/authorization/202309/shops", query)
    with_extras = {**query, "sign": "whatever", "access_token": "tok"}
    assert sign(SECRET, "/authorization/202309/shops", with_extras) == expected


def test_the_webhook_vector() -> None:
    signature = webhook_signature("123456", SECRET, WEBHOOK_BODY)
    assert signature == "1813f00c1d2f168dbc1a77b1e07132ba92e54a145dd87989c4126159305128c3"
    verify({"authorization": signature.upper()}, WEBHOOK_BODY, app_key="123456", app_secret=SECRET)
    with pytest.raises(InvalidSignature):
        verify({"Authorization": signature}, WEBHOOK_BODY + b" ", app_key="123456", app_secret=SECRET)
    with pytest.raises(InvalidSignature):
        verify({"Authorization": f"Bearer {signature}"}, WEBHOOK_BODY, app_key="123456", app_secret=SECRET)


def _signed(request: httpx.Request, auth: httpx.Auth) -> httpx.Request:
    flow = auth.sync_auth_flow(request)
    return next(flow)


def test_the_auth_signs_the_json_body_below_the_mount_prefix_and_sends_the_token_in_a_header() -> None:
    auth = TikTokAuth(
        "123456", SECRET, prefix="/sandbox/tiktok", access_token="tok", shop_cipher="ROW_abc", clock=lambda: 1234567890
    )
    body = {"skus": [{"id": "1", "inventory": [{"warehouse_id": "7", "quantity": 10}]}]}
    url = "http://host/sandbox/tiktok/product/202309/products/1729592969712207000/inventory/update"
    request = _signed(httpx.Request("POST", url, content=json.dumps(body, separators=(",", ":"))), auth)

    params = dict(request.url.params)
    assert params["sign"] == "343c6ac3c31d5b6ce758114db8f684c427b735b741d937b5113abef0e8a89f5c"
    assert (params["app_key"], params["timestamp"], params["shop_cipher"]) == ("123456", "1234567890", "ROW_abc")
    assert "access_token" not in params
    assert request.headers["x-tts-access-token"] == "tok"


def test_a_multipart_body_is_not_signed() -> None:
    auth = TikTokAuth("123456", SECRET, clock=lambda: 1234567890)
    request = httpx.Request(
        "POST",
        "http://host/product/202309/images/upload",
        files={"data": ("a.jpg", b"\xff\xd8\xff-bytes", "image/jpeg")},
        data={"use_case": "MAIN_IMAGE"},
    )
    signed = _signed(request, auth)
    query = {"app_key": "123456", "timestamp": "1234567890"}
    assert signed.url.params["sign"] == sign(SECRET, "/product/202309/images/upload", query)
