from __future__ import annotations

import dataclasses
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.errors import Conflict, Invalid, NotFound
from agrimarket.media.repository import MediaRepository
from agrimarket.media.rules import DEFAULT_RULES, LAZADA, WEB_160
from agrimarket.media.service import MediaService, delete_blobs, is_current
from agrimarket.media.storage import LocalStorage
from agrimarket.models import (
    Category,
    MediaAsset,
    Organization,
    OrganizationKind,
    Product,
    Rendition,
    Unit,
    Variant,
)
from tests.media import images
from tests.media.support import CountingStorage


async def new_product(session: AsyncSession, name: str = "Sầu riêng Ri6") -> Product:
    organization = Organization(name="Hộ Nguyễn Văn An", kind=OrganizationKind.household)
    session.add(organization)
    await session.flush()
    product = Product(organization_id=organization.id, name=name, category=Category.fruit)
    session.add(product)
    await session.flush()
    return product


def upload(seed: int = 1) -> bytes:
    return images.jpeg(images.photo((900, 700), seed=seed))


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(LocalStorage(tmp_path / "media"))


@pytest.fixture
def service(session: AsyncSession, storage: CountingStorage) -> MediaService:
    return MediaService(MediaRepository(session), storage)


async def count(session: AsyncSession, model: type[MediaAsset] | type[Rendition]) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_adding_a_photo_records_the_stored_photo_and_every_rendition(
    session: AsyncSession, service: MediaService, storage: CountingStorage
) -> None:
    product = await new_product(session)

    photo = await service.add_photo(
        organization_id=product.organization_id, product_id=product.id, data=upload(), filename="a.jpg"
    )

    asset = photo.asset
    assert (asset.product_id, asset.position, asset.mime_type) == (product.id, 0, "image/jpeg")
    assert (asset.width, asset.height) == (900, 700)
    assert await storage.inner.exists(asset.storage_key)
    assert set(photo.renditions) == set(DEFAULT_RULES)
    for purpose, rendition in photo.renditions.items():
        assert rendition.source_hash == asset.content_hash
        assert is_current(rendition, asset, DEFAULT_RULES[purpose])
        assert await storage.inner.exists(rendition.storage_key)
    assert await count(session, Rendition) == len(DEFAULT_RULES)


async def test_photos_come_back_in_order_and_can_be_reordered(session: AsyncSession, service: MediaService) -> None:
    product = await new_product(session)
    ids = []
    for seed in (1, 2, 3):
        photo = await service.add_photo(
            organization_id=product.organization_id, product_id=product.id, data=upload(seed), filename=None
        )
        ids.append(photo.asset.id)

    listed = await service.photos(organization_id=product.organization_id, product_id=product.id)
    assert [p.asset.id for p in listed] == ids
    assert [p.asset.position for p in listed] == [0, 1, 2]

    reordered = await service.reorder(
        organization_id=product.organization_id, product_id=product.id, asset_ids=[ids[2], ids[0], ids[1]]
    )
    assert [p.asset.id for p in reordered] == [ids[2], ids[0], ids[1]]

    with pytest.raises(Conflict, match="has changed since this page was loaded"):
        await service.reorder(
            organization_id=product.organization_id, product_id=product.id, asset_ids=[ids[0], ids[1]]
        )


async def test_sending_the_same_photo_twice_keeps_one(session: AsyncSession, service: MediaService) -> None:
    product = await new_product(session)
    first = await service.add_photo(
        organization_id=product.organization_id, product_id=product.id, data=upload(), filename="a.jpg"
    )
    second = await service.add_photo(
        organization_id=product.organization_id, product_id=product.id, data=upload(), filename="a (1).jpg"
    )
    assert second.asset.id == first.asset.id
    assert await count(session, MediaAsset) == 1


async def test_another_farm_cannot_add_read_reorder_or_remove_photos(
    session: AsyncSession, service: MediaService
) -> None:
    product = await new_product(session)
    photo = await service.add_photo(
        organization_id=product.organization_id, product_id=product.id, data=upload(), filename=None
    )
    other = (await new_product(session, "Điều rang muối")).organization_id

    with pytest.raises(NotFound):
        await service.add_photo(organization_id=other, product_id=product.id, data=upload(2), filename=None)
    assert await service.photos(organization_id=other, product_id=product.id) == []
    with pytest.raises(NotFound):
        await service.reorder(organization_id=other, product_id=product.id, asset_ids=[photo.asset.id])
    with pytest.raises(NotFound):
        await service.remove_photo(organization_id=other, asset_id=photo.asset.id)


async def test_a_variant_photo_must_belong_to_the_product(session: AsyncSession, service: MediaService) -> None:
    product = await new_product(session)
    variant = Variant(
        product_id=product.id,
        organization_id=product.organization_id,
        sku="SR-1KG",
        name="hộp 1 kg",
        unit=Unit.hop,
        price_vnd=85_000,
        weight_grams=1000,
    )
    session.add(variant)
    await session.flush()
    photo = await service.add_photo(
        organization_id=product.organization_id,
        product_id=product.id,
        variant_id=variant.id,
        data=upload(),
        filename=None,
    )
    assert photo.asset.variant_id == variant.id
    with pytest.raises(NotFound, match="variant"):
        await service.add_photo(
            organization_id=product.organization_id,
            product_id=product.id,
            variant_id=uuid.uuid4(),
            data=upload(2),
            filename=None,
        )


async def test_a_refused_upload_writes_no_row(session: AsyncSession, service: MediaService) -> None:
    product = await new_product(session)
    with pytest.raises(Invalid):
        await service.add_photo(
            organization_id=product.organization_id, product_id=product.id, data=b"not a photo", filename="x.jpg"
        )
    assert await count(session, MediaAsset) == 0


async def test_removing_a_photo_frees_its_files_after_commit_and_closes_the_gap(
    session: AsyncSession, service: MediaService, storage: CountingStorage
) -> None:
    product = await new_product(session)
    org = product.organization_id
    kept_first = await service.add_photo(organization_id=org, product_id=product.id, data=upload(1), filename=None)
    removed = await service.add_photo(organization_id=org, product_id=product.id, data=upload(2), filename=None)
    kept_last = await service.add_photo(organization_id=org, product_id=product.id, data=upload(3), filename=None)

    keys = await service.remove_photo(organization_id=org, asset_id=removed.asset.id)

    assert set(keys) == {removed.asset.storage_key, *(r.storage_key for r in removed.renditions.values())}
    for key in keys:  # the rows are gone, the files stay until the caller has committed
        assert await storage.inner.exists(key)
    await delete_blobs(storage, keys)
    for key in keys:
        assert not await storage.inner.exists(key)
    listed = await service.photos(organization_id=org, product_id=product.id)
    assert [(p.asset.id, p.asset.position) for p in listed] == [(kept_first.asset.id, 0), (kept_last.asset.id, 1)]
    assert await count(session, Rendition) == 2 * len(DEFAULT_RULES)


async def test_a_photo_still_used_by_another_product_keeps_its_files(
    session: AsyncSession, service: MediaService
) -> None:
    durian, cashew = await new_product(session), await new_product(session, "Hạt điều")
    first = await service.add_photo(
        organization_id=durian.organization_id, product_id=durian.id, data=upload(), filename=None
    )
    await service.add_photo(organization_id=cashew.organization_id, product_id=cashew.id, data=upload(), filename=None)
    assert await service.remove_photo(organization_id=durian.organization_id, asset_id=first.asset.id) == []


async def test_refreshing_renditions_makes_only_what_the_rules_lack(
    session: AsyncSession, storage: CountingStorage
) -> None:
    product = await new_product(session)
    repository = MediaRepository(session)
    first_rules = [LAZADA]
    photo = await MediaService(repository, storage, rules=first_rules).add_photo(
        organization_id=product.organization_id, product_id=product.id, data=upload(), filename=None
    )
    smaller_lazada = dataclasses.replace(LAZADA, target=700, tolerance=Fraction(0))

    storage.reset()
    refreshed = await MediaService(repository, storage, rules=[smaller_lazada, WEB_160]).refresh_renditions(
        organization_id=product.organization_id, asset_id=photo.asset.id
    )

    assert set(refreshed.renditions) == {"lazada.main", "web.160"}
    assert len(storage.puts) == 2  # the changed rule's rendition and the new one
    assert refreshed.renditions["lazada.main"].width == 700
    assert is_current(refreshed.renditions["lazada.main"], photo.asset, smaller_lazada)

    storage.reset()
    await MediaService(repository, storage, rules=[smaller_lazada, WEB_160]).refresh_renditions(
        organization_id=product.organization_id, asset_id=photo.asset.id
    )
    assert (storage.puts, storage.gets) == ([], [])
