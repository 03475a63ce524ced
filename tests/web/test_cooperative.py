"""A cooperative's admin works on its member households' products from the same pages, one farm at a time."""

from __future__ import annotations

import re

import httpx

from tests.web.helpers import add_product, parse, register


async def test_a_cooperative_admin_switches_between_member_farms_without_javascript(client: httpx.AsyncClient) -> None:
    coop = await register(client, name="HTX Điều Bình Phước", kind="cooperative")
    response = await client.post(
        f"/api/v1/organizations/{coop.organization_id}/members", json={"name": "Hộ Võ Văn Em", "member_code": "X01"}
    )
    assert response.status_code == 201, response.text
    household_id = response.json()["id"]
    await add_product(client, coop, name="Hạt điều W320")
    household = type(coop)(phone=coop.phone, organization_id=household_id)
    await add_product(client, household, name="Tiêu đen Lộc Ninh")

    own = await client.get("/products")
    page = parse(own.text)
    assert not page.unlabelled()
    assert re.search(rf'<option value="{household_id}">Hộ Võ Văn Em</option>', own.text)
    assert "Hạt điều W320" in own.text
    assert "Tiêu đen Lộc Ninh" not in own.text

    member = await client.get("/products", params={"org": household_id})  # the switch is a GET form: no script
    assert "Tiêu đen Lộc Ninh" in member.text
    assert "Hạt điều W320" not in member.text
    home = await client.get("/", params={"org": household_id})
    assert "<h1>Hộ Võ Văn Em</h1>" in home.text
