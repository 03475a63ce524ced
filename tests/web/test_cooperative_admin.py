"""The cooperative's pages: member households (added by the representative's phone, each with its products and
orders), and the bulk upload (preview with errors by line and column, apply, the error report); tenancy."""

from __future__ import annotations

import io

import httpx
import pytest

from agrimarket.imports.schemas import RowErrorOut
from agrimarket.web.cooperative import import_problem
from agrimarket.web.i18n import Translator
from tests.web.helpers import csrf, parse, post_form, register

PAGE_BUDGET = 50 * 1024
HEADER = "Hộ sản xuất,Mã SKU,Tên sản phẩm,Quy cách,Danh mục,Đơn vị,Giá bán,Tồn kho,Khối lượng (g)\n"


async def _weight(client: httpx.AsyncClient, html: str) -> int:
    page = parse(html)
    total = len(html.encode())
    for url in page.stylesheets + page.scripts:
        total += len((await client.get(url)).content)
    return total


async def test_a_cooperative_adds_a_member_household_by_phone_and_sees_its_products(client: httpx.AsyncClient) -> None:
    member = await register(client, name="Hộ Lê Văn Cường")
    client.cookies.clear()
    coop = await register(client, name="HTX Nông sản Xanh", kind="cooperative")

    page = await client.get(f"/members?org={coop.organization_id}")
    assert page.status_code == 200
    assert not parse(page.text).unlabelled()
    assert parse(page.text).lang == "vi"
    assert await _weight(client, page.text) <= PAGE_BUDGET
    assert 'href="/members?org=' in (await client.get("/")).text

    unknown = await post_form(
        client,
        "/members",
        {"org": coop.organization_id, "name": "Hộ chưa đăng ký", "phone": "0987000111"},
        page="/members",
    )
    assert unknown.status_code == 422
    assert "chưa đăng ký" in unknown.text

    added = await post_form(
        client,
        "/members",
        {"org": coop.organization_id, "name": "Hộ Cường", "phone": member.phone, "member_code": "HTX-001"},
        page="/members",
    )
    assert added.status_code == 303, added.text
    listed = (await client.get(added.headers["location"])).text
    assert "Hộ Cường" in listed
    assert "HTX-001" in listed

    no_token = await client.post(
        "/members",
        data={"org": coop.organization_id, "name": "X", "phone": member.phone},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert no_token.status_code == 403


async def test_members_of_another_cooperative_or_a_household_are_a_404(client: httpx.AsyncClient) -> None:
    coop = await register(client, name="HTX A", kind="cooperative")
    client.cookies.clear()
    household = await register(client, name="Hộ B")
    assert (await client.get("/members")).status_code == 404
    assert (await client.get(f"/members?org={coop.organization_id}")).status_code == 404
    refused = await post_form(
        client, "/members", {"org": coop.organization_id, "name": "X", "phone": household.phone}, page="/"
    )
    assert refused.status_code == 404


async def test_a_product_file_is_previewed_with_its_errors_then_applied(client: httpx.AsyncClient) -> None:
    user = await register(client, name="Hộ Trần Văn Dũng")
    form = await client.get(f"/imports/new?org={user.organization_id}")
    assert form.status_code == 200
    assert not parse(form.text).unlabelled()
    assert await _weight(client, form.text) <= PAGE_BUDGET
    body = HEADER + ",SR-1KG,Sầu riêng,Hộp 1 kg,Trái cây,hộp,120000,25,1200\n,DIEU-1,Hạt điều,Túi,Hạt,túi,abc,5,500\n"
    uploaded = await client.post(
        "/imports",
        data={"csrf_token": csrf(form.text), "org": user.organization_id},
        files={"file": ("san-pham.csv", io.BytesIO(body.encode()), "text/csv")},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert uploaded.status_code == 303, uploaded.text
    preview = await client.get(uploaded.headers["location"])
    assert preview.status_code == 200
    assert "<td>3</td><td>Giá bán</td>" in preview.text  # line 3, the price column
    # What to type, in the page's language (the API's message is English): the product form's own wording.
    assert "“abc”: Hãy nhập giá bằng đồng" in preview.text
    assert "Enter the price" not in preview.text
    assert "/errors.csv" in preview.text
    assert 'value="valid_rows"' in preview.text
    assert await _weight(client, preview.text) <= PAGE_BUDGET
    report = await client.get(f"/api/v1/imports/{uploaded.headers['location'].rsplit('/', 1)[1]}/errors.csv")
    assert report.status_code == 200

    applied = await post_form(
        client, uploaded.headers["location"] + "/apply", {"mode": "valid_rows"}, page=uploaded.headers["location"]
    )
    assert applied.status_code == 303, applied.text
    done = (await client.get(applied.headers["location"])).text
    assert "Đã lưu" in done
    assert "Sầu riêng" in (await client.get("/products")).text

    client.cookies.clear()
    await register(client, name="Hộ khác")
    assert (await client.get(uploaded.headers["location"])).status_code == 404
    refused = await post_form(client, uploaded.headers["location"] + "/apply", {"mode": "valid_rows"}, page="/")
    assert refused.status_code == 404


async def _upload_page(client: httpx.AsyncClient, organization_id: str, body: str) -> str:
    form = await client.get(f"/imports/new?org={organization_id}")
    uploaded = await client.post(
        "/imports",
        data={"csrf_token": csrf(form.text), "org": organization_id},
        files={"file": ("san-pham.csv", io.BytesIO(body.encode()), "text/csv")},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert uploaded.status_code == 303, uploaded.text
    return str(uploaded.headers["location"])


async def test_products_missing_from_the_file_are_warned_of_and_zeroed_only_when_the_box_is_ticked(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client, name="Hộ Lê Thị Hoa")
    durian = ",SR-1KG,Sầu riêng,Hộp 1 kg,Trái cây,hộp,120000,25,1200\n"
    both = HEADER + durian + ",MIT-1,Mít,Trái,Trái cây,trái,50000,8,3000\n"
    first = await _upload_page(client, user.organization_id, both)
    assert (await post_form(client, first + "/apply", {"mode": "all_or_nothing"}, page=first)).status_code == 303

    only_durian = HEADER + durian
    page = await _upload_page(client, user.organization_id, only_durian)
    preview = (await client.get(page)).text
    assert "1 sản phẩm đang bán không có trong tệp này." in preview
    assert 'name="zero_missing"' in preview
    assert not parse(preview).unlabelled()
    ticked = await post_form(client, page + "/apply", {"mode": "all_or_nothing", "zero_missing": "1"}, page=page)
    assert ticked.status_code == 303, ticked.text

    stock = await client.get(f"/api/v1/organizations/{user.organization_id}/stock")
    assert {row["sku"]: row["available"] for row in stock.json()["items"]} == {"SR-1KG": 25, "MIT-1": 0}


async def test_every_new_form_is_refused_without_its_csrf_token(client: httpx.AsyncClient) -> None:
    user = await register(client)
    some = "00000000-0000-0000-0000-000000000001"
    for path in (
        "/members",
        "/imports",
        f"/imports/{some}/apply",
        f"/orders/{some}/ship",
        f"/orders/{some}/cancel",
        f"/products/{some}/shops/{some}/publish",
        f"/products/{some}/shops/{some}/pause",
        f"/products/{some}/shops/{some}/resume",
    ):
        refused = await client.post(path, data={"org": user.organization_id}, headers={"Sec-Fetch-Site": "same-origin"})
        assert refused.status_code == 403, path
        cross_site = await client.post(path, data={"csrf_token": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross_site.status_code == 403, path


@pytest.mark.parametrize(
    ("code", "column", "vietnamese"),
    [
        ("empty", "Tồn kho", "Ô này không được để trống. Hãy nhập"),
        ("empty", "Đơn vị", "Ô này không được để trống."),
        ("int_parsing", "Khối lượng (g)", "gam"),
        ("formula", "Tên sản phẩm", "công thức"),
        ("duplicate_sku", "Mã SKU", "mỗi SKU chỉ giữ một dòng"),
        ("unknown_household", "Hộ sản xuất", "trang Thành viên"),
        ("file", "", "Không dùng được tệp này: The file has no SKU column."),
        ("something_new", "Cột lạ", "Hãy kiểm tra lại giá trị này."),
    ],
)
def test_every_import_error_reads_in_vietnamese_on_the_page(code: str, column: str, vietnamese: str) -> None:
    error = RowErrorOut(line=2, column=column, value="x", message="The file has no SKU column.", code=code)
    assert vietnamese in import_problem(error, Translator("vi"))
