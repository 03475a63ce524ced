"""All account queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.models import ApiToken, Membership, Organization, OrganizationKind, Role, User, UserSession


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def user_by_phone(self, phone: str) -> User | None:
        result = await self.session.execute(select(User).where(User.phone == phone))
        return result.scalar_one_or_none()

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def organization(self, organization_id: uuid.UUID) -> Organization | None:
        return await self.session.get(Organization, organization_id)

    async def organizations(self, ids: list[uuid.UUID]) -> list[Organization]:
        if not ids:
            return []
        result = await self.session.execute(
            select(Organization).where(Organization.id.in_(ids)).order_by(Organization.created_at, Organization.id)
        )
        return list(result.scalars())

    async def member_households(self, cooperative_id: uuid.UUID) -> list[Organization]:
        result = await self.session.execute(
            select(Organization)
            .where(Organization.cooperative_id == cooperative_id)
            .order_by(Organization.created_at, Organization.id)
        )
        return list(result.scalars())

    async def member_code_taken(self, cooperative_id: uuid.UUID, member_code: str) -> bool:
        result = await self.session.execute(
            select(Organization.id).where(
                Organization.cooperative_id == cooperative_id, Organization.member_code == member_code
            )
        )
        return result.first() is not None

    async def reach(self, user_id: uuid.UUID) -> list[tuple[uuid.UUID, Role, OrganizationKind]]:
        """Direct memberships of a user, with each organization's kind."""
        result = await self.session.execute(
            select(Membership.organization_id, Membership.role, Organization.kind)
            .join(Organization, Organization.id == Membership.organization_id)
            .where(Membership.user_id == user_id)
        )
        return [(org_id, role, kind) for org_id, role, kind in result.all()]

    async def households_of(self, cooperative_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if not cooperative_ids:
            return []
        result = await self.session.execute(
            select(Organization.id).where(Organization.cooperative_id.in_(cooperative_ids))
        )
        return list(result.scalars())

    async def memberships(self, organization_id: uuid.UUID) -> list[tuple[Membership, User]]:
        result = await self.session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organization_id == organization_id)
            .order_by(Membership.created_at, Membership.id)
        )
        return [(m, u) for m, u in result.all()]

    async def membership(self, membership_id: uuid.UUID) -> Membership | None:
        return await self.session.get(Membership, membership_id)

    async def membership_of(self, user_id: uuid.UUID, organization_id: uuid.UUID) -> Membership | None:
        result = await self.session.execute(
            select(Membership).where(Membership.user_id == user_id, Membership.organization_id == organization_id)
        )
        return result.scalar_one_or_none()

    async def owner_count(self, organization_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(Membership.id).where(Membership.organization_id == organization_id, Membership.role == Role.owner)
        )
        return len(result.all())

    async def session_by_hash(self, token_hash: str, now: datetime) -> tuple[UserSession, User] | None:
        result = await self.session.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.token_hash == token_hash, UserSession.expires_at > now, User.is_active.is_(True))
        )
        row = result.first()
        return (row[0], row[1]) if row else None

    async def delete_session(self, token_hash: str) -> None:
        session = (
            await self.session.execute(select(UserSession).where(UserSession.token_hash == token_hash))
        ).scalar_one_or_none()
        if session is not None:
            await self.session.delete(session)

    async def api_token_by_hash(self, token_hash: str, now: datetime) -> tuple[ApiToken, User] | None:
        result = await self.session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(
                ApiToken.token_hash == token_hash,
                ApiToken.revoked_at.is_(None),
                (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
                User.is_active.is_(True),
            )
        )
        row = result.first()
        return (row[0], row[1]) if row else None

    async def api_tokens(self, user_id: uuid.UUID) -> list[ApiToken]:
        result = await self.session.execute(
            select(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.created_at, ApiToken.id)
        )
        return list(result.scalars())

    async def api_token(self, token_id: uuid.UUID) -> ApiToken | None:
        return await self.session.get(ApiToken, token_id)

    async def touch_api_token(self, token_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))

    def add(self, *objects: object) -> None:
        self.session.add_all(objects)

    async def flush(self) -> None:
        await self.session.flush()
