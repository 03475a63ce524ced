"""The few queries only the pages need (everything else goes through the domain services)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.models import Product, ProductStatus


class WebRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def product_count(self, organization_id: uuid.UUID) -> int:
        """Products on sale; the caller has checked the organization is in reach."""
        result = await self.session.execute(
            select(func.count())
            .select_from(Product)
            .where(Product.organization_id == organization_id, Product.status == ProductStatus.active)
        )
        return int(result.scalar_one())
