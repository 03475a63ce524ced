from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from agrimarket.config import new_fernet_key
from agrimarket.errors import Invalid
from agrimarket.kit.crypto import CredentialCipher, token_hash
from agrimarket.kit.money import format_vnd, round_to_thousand
from agrimarket.kit.pagination import Cursor
from agrimarket.kit.text import clean_line, clean_text, fold


def test_text_is_nfc_and_folded_for_comparison() -> None:
    decomposed = "Ca\u0300 phe\u0302 Bu\u031bo\u031b\u0300m"  # "Cà phê Bườm" typed with combining marks
    assert clean_line(f"  {decomposed}\t\n ") == "Cà phê Bườm"
    assert fold("Tồn Kho") == fold("ton kho") == "ton kho"
    assert fold("Đơn vị") == "don vi"


def test_control_characters_are_dropped_but_line_breaks_kept_in_descriptions() -> None:
    assert clean_line("Sầu\x00 riêng\x1b") == "Sầu riêng"
    assert clean_text("Dòng 1\r\nDòng 2\x07") == "Dòng 1\nDòng 2"


@pytest.mark.parametrize(
    ("amount", "shown"), [(120000, "120.000 ₫"), (0, "0 ₫"), (1_250_000, "1.250.000 ₫"), (-5000, "-5.000 ₫")]
)
def test_vnd_is_shown_with_dots_and_the_dong_sign(amount: int, shown: str) -> None:
    assert format_vnd(amount) == shown


def test_prices_round_half_up_to_a_thousand_dong() -> None:
    assert round_to_thousand(124_499) == 124_000
    assert round_to_thousand(124_500) == 125_000


def test_credentials_decrypt_after_a_key_rotation_and_rotate_to_the_newest_key() -> None:
    old_key, new_key = SecretStr(new_fernet_key()), SecretStr(new_fernet_key())
    sealed = CredentialCipher([old_key]).encrypt_json({"access_token": "bí-mật"})
    assert b"access_token" not in sealed
    rotated_cipher = CredentialCipher([new_key, old_key])
    assert rotated_cipher.decrypt_json(sealed) == {"access_token": "bí-mật"}
    resealed = rotated_cipher.rotate(sealed)
    assert CredentialCipher([new_key]).decrypt_json(resealed) == {"access_token": "bí-mật"}
    with pytest.raises(ValueError, match="cannot be decrypted"):
        CredentialCipher([SecretStr(new_fernet_key())]).decrypt_json(sealed)


def test_token_hash_is_stable_and_does_not_contain_the_token() -> None:
    assert token_hash("agm_abc") == token_hash("agm_abc")
    assert "agm_abc" not in token_hash("agm_abc")


def test_a_cursor_round_trips_and_a_tampered_one_is_a_clear_422() -> None:
    cursor = Cursor(datetime(2026, 11, 26, 8, 30, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    with pytest.raises(Invalid) as raised:
        Cursor.decode("not-a-cursor")
    assert raised.value.field == "cursor"
