"""Shopee's signatures match the vectors in marketplaces.md §1.2 and §1.4, and the adapter signs the path relative to
its base URL."""

from __future__ import annotations

import httpx
import pytest

from agrimarket.channels.base import ConnectionInfo
from agrimarket.channels.errors import InvalidSignature
from agrimarket.channels.shopee import ShopeeAuth, public_base, push_signature, shop_base, sign
from agrimarket.channels.shopee.webhooks import parse

KEY = "test_partner_key"
PUSH_BODY = (
    b'{"shop_id":727720655,"code":3,"timestamp":1660123127,"data":{"ordersn":"220810QSK8S7BX",'
    b'"status":"PROCESSED","update_time":1660123127}}'
)
PUSH_URL = "https://example.com/webhook/shopee"


def test_shop_signature_matches_the_documented_base_and_computed_vector() -> None:
    base = shop_base(2001887, "/api/v2/shop/get_shop_info", 1655714431, "59777174636562737266615546704c6d", 14701711)
    assert base == "2001887/api/v2/shop/get_shop_info165571443159777174636562737266615546704c6d14701711"
    assert sign(KEY, base) == "9fdae5aeed86e753249982ec04aa54339280f12d3f456b9e3f7d8ee91e66a2b3"


def test_public_signature_matches_the_computed_vector() -> None:
    base = public_base(2001887, "/api/v2/public/get_shops_by_partner", 1655714431)
    assert sign(KEY, base) == "bfd95b21eda3ed2c80e9373e8c0ce80bdc39b2dc02e4c6dc19e1413c75f8ab09"


def test_push_signature_matches_the_computed_vector() -> None:
    assert (
        push_signature(KEY, PUSH_URL, PUSH_BODY) == "358c6cb18ddebd7476c2d67886e4580a6711b63fea448d1a0d1012127e23e938"
    )


def test_auth_signs_the_path_relative_to_a_prefixed_base_url_with_common_params_in_the_query() -> None:
    auth = ShopeeAuth(
        2001887,
        KEY,
        prefix="/sandbox/shopee",
        access_token="59777174636562737266615546704c6d",
        shop_id=14701711,
        clock=lambda: 1655714431.9,
    )
    request = httpx.Request("GET", "http://127.0.0.1:8000/sandbox/shopee/api/v2/shop/get_shop_info?x=1")
    signed = next(auth.auth_flow(request))
    query = dict(signed.url.params)
    assert signed.url.path == "/sandbox/shopee/api/v2/shop/get_shop_info"
    assert query == {
        "x": "1",
        "partner_id": "2001887",
        "timestamp": "1655714431",
        "access_token": "59777174636562737266615546704c6d",
        "shop_id": "14701711",
        "sign": "9fdae5aeed86e753249982ec04aa54339280f12d3f456b9e3f7d8ee91e66a2b3",
    }


def test_push_with_the_documented_vector_parses_to_an_order_event_stable_across_redeliveries() -> None:
    headers = {"authorization": "358c6cb18ddebd7476c2d67886e4580a6711b63fea448d1a0d1012127e23e938"}
    event = parse(KEY, 727720655, url=PUSH_URL, headers=headers, body=PUSH_BODY)
    again = parse(KEY, 727720655, url=PUSH_URL, headers=headers, body=PUSH_BODY)
    assert event.kind == "order"
    assert list(event.order_ids) == ["220810QSK8S7BX"]
    assert event.external_id == again.external_id == "3:220810QSK8S7BX:PROCESSED:1660123127"


@pytest.mark.parametrize(
    ("url", "signature", "body"),
    [
        (PUSH_URL, "0" * 64, PUSH_BODY),  # forged
        ("https://example.com/other", "358c6cb18ddebd7476c2d67886e4580a6711b63fea448d1a0d1012127e23e938", PUSH_BODY),
        (PUSH_URL, "358c6cb18ddebd7476c2d67886e4580a6711b63fea448d1a0d1012127e23e938", PUSH_BODY + b" "),
    ],
    ids=["bad-signature", "other-callback-url", "altered-body"],
)
def test_push_with_a_signature_that_does_not_verify_is_refused(url: str, signature: str, body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        parse(KEY, 727720655, url=url, headers={"Authorization": signature}, body=body)


def test_push_without_a_signature_header_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        parse(KEY, 727720655, url=PUSH_URL, headers={}, body=PUSH_BODY)


def test_an_adapter_with_unreadable_credentials_refuses_pushes_rather_than_crashing() -> None:
    import uuid

    from agrimarket.channels.shopee import plugin

    info = ConnectionInfo(uuid.uuid4(), uuid.uuid4(), "1", credentials={"shop_id": 1})
    adapter = plugin.adapter(info, httpx.AsyncClient())
    with pytest.raises(InvalidSignature):
        adapter.parse_webhook(url=PUSH_URL, headers={"Authorization": "x"}, body=PUSH_BODY)
