"""The photos API and the files under /media, through HTTP as a farmer's phone or browser calls them."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from obstore.store import MemoryStore
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agrimarket.app import _media_executor
from agrimarket.config import Settings
from agrimarket.deps import get_session
from agrimarket.media.pipeline import cpu_executor
from agrimarket.media.rules import CHANNEL_RULES, MB
from agrimarket.media.storage import IMMUTABLE_CACHE_CONTROL, LocalStorage, ObjectStorage
from tests.catalog.helpers import add_listing, desired_version
from tests.conftest import _bare_app
from tests.factories import Account, create_product, register
from tests.media import images
from tests.media.support import CountingStorage

MEDIA = "/media/"


@pytest.fixture
def storage(app: FastAPI, tmp_path: Path) -> LocalStorage:
    """Each test its own photo folder, so what one test stores or deletes cannot pass for another's."""
    storage = LocalStorage(tmp_path / "media")
    app.state.media_storage = storage
    return storage


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    product_id: str,
    data: bytes,
    *,
    filename: str = "IMG_0001.JPG",
    content_type: str = "image/jpeg",
    variant_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/products/{product_id}/photos",
        files={"photo": (filename, data, content_type)},
        data={"variant_id": variant_id} if variant_id else None,
        headers=headers or account.headers,
    )


def a_photo(seed: int = 1, size: tuple[int, int] = (640, 480)) -> bytes:
    return images.jpeg(images.photo(size, seed=seed))


def stored_keys(storage: LocalStorage) -> set[str]:
    return {p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file()}


def urls_of(photo: dict[str, Any]) -> list[str]:
    return [photo["url"], *(t["url"] for t in photo["thumbnails"]), *(r["url"] for r in photo["renditions"].values())]


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(pixel: Any, colour: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=False))


@pytest.fixture
async def farmer(client: httpx.AsyncClient, storage: LocalStorage) -> Account:
    return await register(client)


@pytest.fixture
async def product(client: httpx.AsyncClient, farmer: Account) -> dict[str, Any]:
    return await create_product(client, farmer, variants=2)


# --- adding a photo, and getting it back -----------------------------------------------------------------------


async def test_a_sideways_phone_photo_with_gps_is_served_upright_and_without_any_metadata(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    # Stored sideways (1200 × 900) with orientation 6, the phone's make and the farm's GPS position in EXIF.
    sideways = images.with_marker(images.photo((1200, 900)), corner_size=150)
    upload_bytes = images.jpeg(sideways, orientation=6)
    assert images.SECRET.encode() in upload_bytes

    response = await upload(client, farmer, product["id"], upload_bytes)

    assert response.status_code == 201, response.text
    photo = response.json()
    assert (photo["position"], photo["width"], photo["height"]) == (0, 900, 1200)
    assert (photo["product_id"], photo["variant_id"], photo["mime_type"]) == (product["id"], None, "image/jpeg")
    assert photo["original_filename"] == "IMG_0001.JPG"
    assert photo["url"].startswith("/media/images/")
    assert [t["width"] for t in photo["thumbnails"]] == [160, 320, 640]
    assert {t["mime_type"] for t in photo["thumbnails"]} == {"image/webp"}
    assert set(photo["renditions"]) == {rule.purpose for rule in CHANNEL_RULES.values()}
    assert all(url.startswith("/media/renditions/") for url in urls_of(photo)[1:])

    served = {}
    for url in urls_of(photo):
        answer = await client.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["cache-control"] == IMMUTABLE_CACHE_CONTROL
        assert answer.headers["x-content-type-options"] == "nosniff"
        served[url] = (answer.headers["content-type"], answer.content)

    described = [photo, *photo["thumbnails"], *photo["renditions"].values()]
    for item in described:
        content_type, data = served[item["url"]]
        image = opened(data)
        assert content_type == item["mime_type"] == Image.MIME[image.format or ""]
        assert image.size == (item["width"], item["height"])
        assert images.SECRET.encode() not in data
        assert b"Exif\x00\x00" not in data
        assert not image.getexif()
        assert not image.getexif().get_ifd(0x8825)  # no GPS
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment"} & set(image.info)
    upright = [photo, *photo["thumbnails"], photo["renditions"]["lazada.main"], photo["renditions"]["tiktok.main"]]
    for item in upright:
        image = opened(served[item["url"]][1]).convert("RGB")
        assert image.height > image.width, item["url"]
        # the stored top-left (red) is now top-right; the stored bottom-left (blue) is now top-left
        assert near(image.getpixel((image.width - 2, 2)), images.RED), item["url"]
        assert near(image.getpixel((2, 2)), images.BLUE), item["url"]


async def test_an_iphone_heic_photo_is_accepted(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    response = await upload(
        client,
        farmer,
        product["id"],
        images.heic(images.photo((480, 360))),
        filename="IMG_4242.HEIC",
        content_type="image/heic",
    )
    assert response.status_code == 201, response.text
    photo = response.json()
    assert (photo["mime_type"], photo["width"], photo["height"]) == ("image/jpeg", 480, 360)
    assert photo["original_filename"] == "IMG_4242.HEIC"
    assert (await client.get(photo["url"])).headers["content-type"] == "image/jpeg"


async def test_a_photo_of_one_variant_must_name_a_variant_of_this_product(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    variant_id = product["variants"][1]["id"]
    response = await upload(client, farmer, product["id"], a_photo(), variant_id=variant_id)
    assert response.status_code == 201, response.text
    assert response.json()["variant_id"] == variant_id

    other = await create_product(client, farmer, name="Điều rang muối")
    before = stored_keys(storage)
    response = await upload(client, farmer, product["id"], a_photo(2), variant_id=other["variants"][0]["id"])
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "variant_id"
    assert stored_keys(storage) == before  # refused before the photo was processed


async def test_a_photo_change_reaches_every_listing_of_the_product(
    client: httpx.AsyncClient,
    farmer: Account,
    product: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    listings = [
        await add_listing(
            sessionmaker, organization_id=farmer.organization_id, product_id=product["id"], variant_id=v["id"]
        )
        for v in product["variants"]
    ]

    async def versions() -> tuple[int, list[int]]:
        answer = await client.get(f"/api/v1/products/{product['id']}", headers=farmer.headers)
        return answer.json()["version"], [await desired_version(sessionmaker, listing) for listing in listings]

    first = (await upload(client, farmer, product["id"], a_photo(1))).json()
    assert await versions() == (2, [2, 2])
    second = (await upload(client, farmer, product["id"], a_photo(2))).json()
    assert await versions() == (3, [3, 3])
    await upload(client, farmer, product["id"], a_photo(2))  # the same photo again: nothing changes
    assert await versions() == (3, [3, 3])

    order = f"/api/v1/products/{product['id']}/photos/order"
    same = await client.put(order, json={"photo_ids": [first["id"], second["id"]]}, headers=farmer.headers)
    assert same.status_code == 200
    assert await versions() == (3, [3, 3])  # an unchanged order pushes nothing
    await client.put(order, json={"photo_ids": [second["id"], first["id"]]}, headers=farmer.headers)
    assert await versions() == (4, [4, 4])

    await client.delete(f"/api/v1/photos/{first['id']}", headers=farmer.headers)
    assert await versions() == (5, [5, 5])


async def test_the_upload_s_own_transaction_starts_only_after_the_photo_is_processed(
    app: FastAPI,
    client: httpx.AsyncClient,
    farmer: Account,
    product: dict[str, Any],
    storage: LocalStorage,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # On SQLite a writing transaction holds the database's write lock from its first statement: it must not be
    # held while the photo is decoded and rendered. Storage is written at the end of that work.
    write_sessions: list[AsyncSession] = []

    def make_write_session() -> AsyncSession:
        write_sessions.append(sessionmaker())
        return write_sessions[-1]

    class Watching(CountingStorage):
        async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
            in_transaction.extend(session.in_transaction() for session in write_sessions)
            await super().put(key, data, content_type=content_type)

    in_transaction: list[bool] = []
    app.state.sessionmaker = make_write_session
    app.state.media_storage = Watching(storage)

    response = await upload(client, farmer, product["id"], a_photo())

    assert response.status_code == 201, response.text
    assert len(write_sessions) == 1
    assert in_transaction  # storage was written
    assert not any(in_transaction)


# --- refused uploads ---------------------------------------------------------------------------------------------


async def test_a_text_file_named_jpg_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    response = await upload(client, farmer, product["id"], b"Gia sau rieng hom nay: 85.000d/kg\n", filename="a.jpg")
    assert response.status_code == 422
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid", "photo")
    assert body["message"].startswith("This file is not a photo we can read.")
    assert stored_keys(storage) == set()


async def test_a_request_without_a_photo_is_refused(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    response = await client.post(
        f"/api/v1/products/{product['id']}/photos", data={"note": "quên ảnh"}, headers=farmer.headers
    )
    assert response.status_code == 422
    assert response.json()["field"] == "photo"


@pytest.mark.parametrize(
    "bomb",
    [images.png_declaring(100_000, 100_000), images.jpeg_declaring(65_000, 65_000)],
    ids=["png-10-gigapixels", "jpeg-4-gigapixels"],
)
async def test_a_decompression_bomb_is_refused_from_its_header(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage, bomb: bytes
) -> None:
    response = await upload(client, farmer, product["id"], bomb, filename="bom.png", content_type="image/png")
    assert response.status_code == 413
    assert response.json()["field"] == "photo"
    assert "the limit is 64 megapixels" in response.json()["message"]
    assert stored_keys(storage) == set()


@pytest.fixture
async def small_limit_client(
    migrated: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], storage: LocalStorage
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a 1 MB upload limit (settings are read when the app is made)."""
    app = _bare_app(migrated.model_copy(update={"media_max_upload_mb": 1}), engine)
    app.state.sessionmaker = app.state.read_sessionmaker = sessionmaker
    app.state.media_storage = storage
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize(
    "size",
    [MB + 1024, 3 * MB],
    ids=["just-over: refused by read_capped", "far-over: refused before the form is parsed"],
)
async def test_an_upload_over_the_size_limit_is_refused(
    small_limit_client: httpx.AsyncClient, storage: LocalStorage, size: int
) -> None:
    farmer = await register(small_limit_client)
    product = await create_product(small_limit_client, farmer)
    oversized = a_photo() + b"\x00" * (size - len(a_photo()))

    response = await upload(small_limit_client, farmer, product["id"], oversized)

    assert response.status_code == 413, response.text
    if size < 2 * MB:
        assert response.json()["field"] == "photo"
        assert "larger than 1 MB" in response.json()["message"]
    # Far over, Starlette's body-limit middleware answers by itself, in plain text, before any handler runs.
    assert stored_keys(storage) == set()
    within = await upload(small_limit_client, farmer, product["id"], a_photo())
    assert within.status_code == 201, within.text


# --- listing, reordering, removing -----------------------------------------------------------------------------


async def test_photos_are_listed_in_order_and_can_be_reordered(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    ids = [(await upload(client, farmer, product["id"], a_photo(seed))).json()["id"] for seed in (1, 2, 3)]
    photos = f"/api/v1/products/{product['id']}/photos"

    listed = (await client.get(photos, headers=farmer.headers)).json()
    assert [(p["id"], p["position"]) for p in listed] == [(ids[0], 0), (ids[1], 1), (ids[2], 2)]

    new_order = [ids[2], ids[0], ids[1]]
    response = await client.put(f"{photos}/order", json={"photo_ids": new_order}, headers=farmer.headers)
    assert response.status_code == 200, response.text
    assert [p["id"] for p in response.json()] == new_order
    listed = (await client.get(photos, headers=farmer.headers)).json()
    assert [(p["id"], p["position"]) for p in listed] == [(new_order[0], 0), (new_order[1], 1), (new_order[2], 2)]

    for stale in ([ids[0], ids[1]], [*ids, str(uuid.uuid4())], [ids[0], ids[0], ids[1], ids[2]]):
        response = await client.put(f"{photos}/order", json={"photo_ids": stale}, headers=farmer.headers)
        assert response.status_code == 409, stale
        assert response.json()["field"] == "photo_ids"
        assert "Reload the page" in response.json()["message"]


async def test_removing_a_photo_deletes_its_files_after_the_commit(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    kept = (await upload(client, farmer, product["id"], a_photo(1))).json()
    removed = (await upload(client, farmer, product["id"], a_photo(2))).json()
    removed_keys = {url.removeprefix(MEDIA) for url in urls_of(removed)}
    assert removed_keys <= stored_keys(storage)

    response = await client.delete(f"/api/v1/photos/{removed['id']}", headers=farmer.headers)

    assert response.status_code == 204
    assert removed_keys.isdisjoint(stored_keys(storage))
    assert {url.removeprefix(MEDIA) for url in urls_of(kept)} <= stored_keys(storage)
    assert (await client.get(removed["url"])).status_code == 404
    listed = (await client.get(f"/api/v1/products/{product['id']}/photos", headers=farmer.headers)).json()
    assert [(p["id"], p["position"]) for p in listed] == [(kept["id"], 0)]
    again = await client.delete(f"/api/v1/photos/{removed['id']}", headers=farmer.headers)
    assert again.status_code == 404


async def test_a_photo_used_by_another_product_keeps_its_files(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    other = await create_product(client, farmer, name="Sầu riêng Monthong")
    first = (await upload(client, farmer, product["id"], a_photo())).json()
    second = (await upload(client, farmer, other["id"], a_photo())).json()
    assert urls_of(first) == urls_of(second)  # the same bytes, stored once

    assert (await client.delete(f"/api/v1/photos/{first['id']}", headers=farmer.headers)).status_code == 204
    assert {url.removeprefix(MEDIA) for url in urls_of(second)} <= stored_keys(storage)


async def test_a_removal_whose_commit_fails_keeps_its_files(
    app: FastAPI, client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    photo = (await upload(client, farmer, product["id"], a_photo())).json()

    async def commit_fails(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.app.state.sessionmaker() as session:
            yield session
            raise RuntimeError("the database went away at commit")

    app.dependency_overrides[get_session] = commit_fails
    try:
        with pytest.raises(RuntimeError, match="went away"):
            await client.delete(f"/api/v1/photos/{photo['id']}", headers=farmer.headers)
    finally:
        app.dependency_overrides.clear()
    assert {url.removeprefix(MEDIA) for url in urls_of(photo)} <= stored_keys(storage)


# --- tenancy -------------------------------------------------------------------------------------------------


async def test_another_farm_cannot_see_add_reorder_or_remove_photos(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    photo = (await upload(client, farmer, product["id"], a_photo())).json()
    before = stored_keys(storage)
    outsider = await register(client, name="Hộ Trần Thị Bình")
    photos = f"/api/v1/products/{product['id']}/photos"

    attempts = [
        await upload(client, outsider, product["id"], a_photo(2)),
        await client.get(photos, headers=outsider.headers),
        await client.put(f"{photos}/order", json={"photo_ids": [photo["id"]]}, headers=outsider.headers),
        await client.delete(f"/api/v1/photos/{photo['id']}", headers=outsider.headers),
    ]

    assert [a.status_code for a in attempts] == [404, 404, 404, 404]
    assert attempts[0].json()["message"] == "Product not found."
    assert stored_keys(storage) == before  # the outsider's photo was not even processed
    assert len((await client.get(photos, headers=farmer.headers)).json()) == 1


async def test_a_product_of_another_farm_looks_like_one_that_does_not_exist(
    client: httpx.AsyncClient, farmer: Account
) -> None:
    neighbour = await register(client, name="Hộ Lê Văn Cường")
    theirs = await create_product(client, neighbour)
    foreign = await upload(client, farmer, theirs["id"], a_photo())
    missing = await upload(client, farmer, str(uuid.uuid4()), a_photo())
    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())
    assert foreign.status_code == 404


async def test_an_upload_needs_a_login_and_a_same_site_request(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any], storage: LocalStorage
) -> None:
    anonymous = await upload(client, farmer, product["id"], a_photo(), headers={"X-Anonymous": "1"})
    assert anonymous.status_code == 401
    cross_site = await upload(
        client, farmer, product["id"], a_photo(), headers={**farmer.headers, "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert stored_keys(storage) == set()


# --- serving files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/media/images/00/" + "0" * 64 + ".jpg",  # well-formed, not stored
        "/media/dev-secrets.json",
        "/media/agrimarket.db",
        "/media/outside/secret.jpg",
        "/media/images/%2e%2e/%2e%2e/dev-secrets.json",
        "/media/images/..%2F..%2Fdev-secrets.json",
        "/media/%2Fetc%2Fpasswd",
        "/media/images/ab/notes.txt",
        "/media/images/AB/x.jpg",
        "/media/",
    ],
)
async def test_only_stored_photos_are_served(
    client: httpx.AsyncClient, storage: LocalStorage, tmp_path: Path, path: str
) -> None:
    (tmp_path / "dev-secrets.json").write_text('{"secret_key": "x"}')
    await storage.put("outside/secret.jpg", b"\xff\xd8\xff not served")
    await storage.put("images/ab/notes.txt", b"not served")
    response = await client.get(path)
    assert response.status_code == 404, response.text


async def test_an_object_store_is_streamed_through_the_app(
    app: FastAPI, client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    app.state.media_storage = ObjectStorage(MemoryStore())
    photo = (await upload(client, farmer, product["id"], a_photo())).json()

    thumbnail = photo["thumbnails"][0]
    response = await client.get(thumbnail["url"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["cache-control"] == IMMUTABLE_CACHE_CONTROL
    assert opened(response.content).size == (thumbnail["width"], thumbnail["height"])
    assert (await client.get("/media/images/00/" + "0" * 64 + ".jpg")).status_code == 404


async def test_an_object_store_behind_a_cdn_is_a_redirect(
    app: FastAPI, client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    app.state.media_storage = ObjectStorage(MemoryStore(), public_base_url="https://anh.agrimarket.example/")
    photo = (await upload(client, farmer, product["id"], a_photo())).json()

    response = await client.get(photo["url"])

    assert response.status_code == 307
    assert response.headers["location"] == "https://anh.agrimarket.example/" + photo["url"].removeprefix(MEDIA)


@pytest.fixture
def cdn_settings(app: FastAPI) -> Iterator[None]:
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(update={"media_public_base_url": "https://anh.agrimarket.example"})
    yield
    app.state.settings = settings


@pytest.mark.usefixtures("cdn_settings")
async def test_with_a_public_base_url_photo_urls_point_there(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    photo = (await upload(client, farmer, product["id"], a_photo())).json()
    assert all(url.startswith("https://anh.agrimarket.example/") for url in urls_of(photo))


# --- the app's photo thread pool -----------------------------------------------------------------------------


async def test_the_photo_thread_pool_stops_with_the_app_and_a_new_app_gets_a_new_one(app: FastAPI) -> None:
    async with _media_executor(app):
        pool = cpu_executor()
        assert pool.submit(sum, [1, 2]).result() == 3
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(sum, [1, 2])
    assert cpu_executor() is not pool
    assert cpu_executor().submit(sum, [1, 2]).result() == 3


async def test_a_product_read_and_its_list_carry_its_photos_in_order(
    client: httpx.AsyncClient, farmer: Account, product: dict[str, Any]
) -> None:
    first = (await upload(client, farmer, product["id"], a_photo(seed=1))).json()
    second = (await upload(client, farmer, product["id"], a_photo(seed=2))).json()
    other = await create_product(client, farmer, name="Tiêu đen")

    detail = await client.get(f"/api/v1/products/{product['id']}", headers=farmer.headers)
    listed = await client.get(f"/api/v1/organizations/{farmer.organization_id}/products", headers=farmer.headers)

    assert [p["id"] for p in detail.json()["photos"]] == [first["id"], second["id"]]
    assert detail.json()["photos"][0]["thumbnails"][0]["url"].startswith("/media/")
    photos_by_product = {item["id"]: [p["id"] for p in item["photos"]] for item in listed.json()["items"]}
    assert photos_by_product == {product["id"]: [first["id"], second["id"]], other["id"]: []}
