"""Lazada's request and push signatures reproduce the published vectors; envelopes map to the five channel errors."""

from __future__ import annotations

import httpx
import pytest

from agrimarket.channels.errors import AuthExpired, ChannelError, ChannelNotFound, RateLimited, Rejected, Retryable
from agrimarket.channels.lazada import LazadaAuth, push_signature, sign
from agrimarket.channels.lazada.client import error_for

VECTOR = "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"


def test_request_signature_matches_the_published_vector() -> None:
    params = {
        "access_token": "test",
        "app_key": "123456",
        "order_id": "1234",
        "sign_method": "sha256",
        "timestamp": "1517820392000",
    }
    assert sign("helloworld", "/order/get", params) == VECTOR


def test_auth_adds_system_params_and_signs_the_path_below_the_gateway() -> None:
    auth = LazadaAuth("123456", "helloworld", base_path="/rest", access_token="test", clock=lambda: 1517820392.0)
    request = httpx.Request("GET", "https://api.lazada.vn/rest/order/get", params={"order_id": "1234"})
    signed = next(auth.auth_flow(request))
    assert signed.url.params["sign"] == VECTOR
    assert signed.url.params["timestamp"] == "1517820392000"
    assert signed.url.params["sign_method"] == "sha256"


def test_auth_signs_form_fields_and_a_mounted_gateway_path() -> None:
    auth = LazadaAuth("123456", "helloworld", base_path="/sandbox/lazada/rest", clock=lambda: 1517820392.0)
    request = httpx.Request("POST", "http://demo.test/sandbox/lazada/rest/order/get", data={"order_id": "1234"})
    signed = next(auth.auth_flow(request))
    expected = sign(
        "helloworld",
        "/order/get",
        {"app_key": "123456", "order_id": "1234", "sign_method": "sha256", "timestamp": "1517820392000"},
    )
    assert signed.url.params["sign"] == expected
    assert "access_token" not in signed.url.params


def test_push_signature_matches_the_computed_vector() -> None:
    body = (
        b'{"seller_id":"1234567","message_type":0,"data":{"order_status":"unpaid","trade_order_id":"260422900198363",'
        b'"trade_order_line_id":"260422900298363","status_update_time":1603698638},"timestamp":1603766859530,'
        b'"site":"lazada_vn"}'
    )
    expected = "59e04e1b1f307b7180fd58126161907cd20d33ac17cbce90ec2ae19907e701e6"
    assert push_signature("123456", "3412gyo124goi3124", body) == expected


@pytest.mark.parametrize(
    ("envelope", "kind"),
    [
        (
            {"code": "ApiCallLimit", "message": "Api access frequency exceeds the limit. this ban will last 1 seconds"},
            RateLimited,
        ),
        ({"code": "E901", "message": "request is too frequent"}, RateLimited),
        ({"code": "IllegalAccessToken", "message": "The specified access token is invalid or expired"}, AuthExpired),
        ({"type": "SYSTEM", "code": "InternalError", "message": "boom"}, Retryable),
        ({"code": "ServiceTimeout", "message": "timeout"}, Retryable),
        ({"code": "16", "message": 'E016: "9" Invalid Order ID'}, ChannelNotFound),
        ({"type": "ISV", "code": "IncompleteSignature", "message": "The request signature does not conform"}, Rejected),
        ({"type": "ISV", "code": "E204", "message": "Too many SKU in one request"}, Rejected),
    ],
)
def test_error_envelopes_map_to_channel_errors(envelope: dict[str, str], kind: type[ChannelError]) -> None:
    error = error_for(envelope)
    assert type(error) is kind
    assert error.code == envelope["code"]
    assert error.message == envelope["message"]


def test_api_call_limit_hint_becomes_retry_after() -> None:
    error = error_for(
        {"code": "ApiCallLimit", "message": "Api access frequency exceeds the limit. this ban will last 3 seconds"}
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


def test_success_envelope_is_no_error() -> None:
    assert error_for({"code": "0", "data": {}}) is None
