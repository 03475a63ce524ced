"""Account rules: registration, login, sessions, tokens, organizations, memberships. Never commits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agrimarket.accounts.permissions import Access, outranks_or_equals
from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.security import burn_verify, hash_password, verify_password
from agrimarket.db import transaction
from agrimarket.errors import Conflict, Invalid, NotAuthenticated, NotFound
from agrimarket.kit.crypto import new_token, token_hash
from agrimarket.kit.phone import normalize_vn_mobile
from agrimarket.models import (
    ApiToken,
    Membership,
    Organization,
    OrganizationKind,
    Role,
    User,
    UserSession,
    utcnow,
)

# ``last_used_at`` is a hint for people reviewing their tokens; writing it on every call would be a write per read.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=5)
_R = TypeVar("_R")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user through a browser session, or through an API token bound to one organization."""

    user: User
    access: Access
    api_token_id: uuid.UUID | None = None
    token_needs_touch: bool = False


async def _off_loop(function: Callable[..., _R], *args: str) -> _R:
    """Argon2 takes tens of milliseconds of CPU (and releases the GIL): in a thread, so the event loop keeps serving
    every other request (a marketplace's push waits for its answer) meanwhile."""
    return await asyncio.to_thread(function, *args)


class AccountService:
    def __init__(self, repository: AccountRepository, readers: async_sessionmaker[AsyncSession] | None = None) -> None:
        self.repo = repository
        # Where a login looks the password hash up before its own transaction writes anything (on SQLite the write
        # transaction holds the process's one writer connection, and Argon2 takes ~170 ms).
        self.readers = readers

    # -- registration and login -------------------------------------------------------------------------------

    async def register(
        self, *, phone: str, password: str, full_name: str, organization_name: str, kind: OrganizationKind
    ) -> tuple[User, Organization]:
        phone = normalize_vn_mobile(phone)
        # Hashed first: the transaction (on SQLite, the one writer connection) is not held while Argon2 works.
        password_hash = await _off_loop(hash_password, password)
        if await self.repo.user_by_phone(phone) is not None:
            raise Conflict("This phone number is already registered. Log in instead.", field="phone")
        user = User(id=uuid.uuid4(), phone=phone, full_name=full_name, password_hash=password_hash)
        organization = Organization(id=uuid.uuid4(), name=organization_name, kind=kind)
        self.repo.add(user, organization)
        await self.repo.flush()
        self.repo.add(Membership(user_id=user.id, organization_id=organization.id, role=Role.owner))
        await self.repo.flush()
        return user, organization

    async def create_user(self, *, phone: str, password: str, full_name: str) -> User:
        phone = normalize_vn_mobile(phone)
        password_hash = await _off_loop(hash_password, password)
        if await self.repo.user_by_phone(phone) is not None:
            raise Conflict("This phone number is already registered.", field="phone")
        user = User(phone=phone, full_name=full_name, password_hash=password_hash)
        self.repo.add(user)
        await self.repo.flush()
        return user

    async def authenticate(self, phone: str, password: str) -> User:
        message = "The phone number or password is wrong."
        try:
            phone = normalize_vn_mobile(phone)
        except Invalid:
            await _off_loop(burn_verify, password)
            raise NotAuthenticated(message) from None
        if self.readers is not None:
            async with transaction(self.readers) as reading:
                found = await AccountRepository(reading).user_by_phone(phone)
        else:
            found = await self.repo.user_by_phone(phone)
        if found is None or not found.is_active:
            await _off_loop(burn_verify, password)
            raise NotAuthenticated(message)
        if not await _off_loop(verify_password, password, found.password_hash):
            raise NotAuthenticated(message)
        user = found if self.readers is None else await self.repo.user_by_id(found.id)
        if user is None or not user.is_active:  # gone or deactivated while the password was being checked
            raise NotAuthenticated(message)
        user.last_login_at = utcnow()
        return user

    async def start_session(self, user: User, ttl: timedelta, user_agent: str | None) -> str:
        token = new_token("ses")
        now = utcnow()
        self.repo.add(
            UserSession(
                token_hash=token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=now + ttl,
                user_agent=(user_agent or "")[:300] or None,
            )
        )
        await self.repo.flush()
        return token

    async def end_session(self, token: str) -> None:
        await self.repo.delete_session(token_hash(token))

    # -- who is calling ---------------------------------------------------------------------------------------

    async def access_for(self, user_id: uuid.UUID, limit_to: uuid.UUID | None = None) -> Access:
        direct = await self.repo.reach(user_id)
        roles: dict[uuid.UUID, Role] = {org_id: role for org_id, role, _ in direct}
        managed_coops = [
            org_id
            for org_id, role, kind in direct
            if kind is OrganizationKind.cooperative and outranks_or_equals(role, Role.admin)
        ]
        for household_id in await self.repo.households_of(managed_coops):
            # A cooperative admin manages member households' products, but is not their owner.
            if household_id not in roles or not outranks_or_equals(roles[household_id], Role.admin):
                roles[household_id] = Role.admin
        if limit_to is not None:
            scope = {limit_to}
            if limit_to in managed_coops:
                scope.update(await self.repo.households_of([limit_to]))
            roles = {org_id: role for org_id, role in roles.items() if org_id in scope}
        return Access(user_id=user_id, roles=roles)

    async def principal_from_session(self, token: str) -> Principal | None:
        found = await self.repo.session_by_hash(token_hash(token), utcnow())
        if found is None:
            return None
        _, user = found
        return Principal(user=user, access=await self.access_for(user.id))

    async def principal_from_api_token(self, token: str) -> Principal | None:
        now = utcnow()
        found = await self.repo.api_token_by_hash(token_hash(token), now)
        if found is None:
            return None
        api_token, user = found
        access = await self.access_for(user.id, limit_to=api_token.organization_id)
        if not access.can_reach(api_token.organization_id):
            return None  # the user has since lost access to the token's organization
        stale = api_token.last_used_at is None or now - api_token.last_used_at > TOKEN_TOUCH_INTERVAL
        return Principal(user=user, access=access, api_token_id=api_token.id, token_needs_touch=stale)

    async def touch_api_token(self, token_id: uuid.UUID) -> None:
        await self.repo.touch_api_token(token_id, utcnow())

    # -- organizations and memberships ------------------------------------------------------------------------

    async def organizations_of(self, access: Access) -> list[tuple[Organization, Role]]:
        organizations = await self.repo.organizations(access.organization_ids)
        return [(org, access.roles[org.id]) for org in organizations]

    async def get_organization(self, access: Access, organization_id: uuid.UUID) -> tuple[Organization, Role]:
        role = access.require(organization_id)
        organization = await self.repo.organization(organization_id)
        if organization is None:
            raise NotFound("Organization not found.")
        return organization, role

    async def create_organization(
        self, user: User, *, name: str, kind: OrganizationKind, province: str | None
    ) -> Organization:
        organization = Organization(id=uuid.uuid4(), name=name, kind=kind, province=province)
        self.repo.add(organization)
        await self.repo.flush()
        self.repo.add(Membership(user_id=user.id, organization_id=organization.id, role=Role.owner))
        await self.repo.flush()
        return organization

    async def update_organization(
        self, access: Access, organization_id: uuid.UUID, *, name: str | None, province: str | None
    ) -> Organization:
        access.require(organization_id, Role.admin)
        organization, _ = await self.get_organization(access, organization_id)
        if name is not None:
            organization.name = name
        if province is not None:
            organization.province = province
        await self.repo.flush()
        return organization

    async def add_member_household(
        self,
        access: Access,
        cooperative_id: uuid.UUID,
        *,
        name: str,
        member_code: str | None,
        owner_phone: str | None,
        province: str | None,
    ) -> Organization:
        access.require(cooperative_id, Role.admin)
        cooperative, _ = await self.get_organization(access, cooperative_id)
        if cooperative.kind is not OrganizationKind.cooperative:
            raise Invalid("Only a cooperative can have member households.", field="organization_id")
        if member_code and await self.repo.member_code_taken(cooperative_id, member_code):
            raise Conflict(f"Member code {member_code} is already used in this cooperative.", field="member_code")
        owner: User | None = None
        if owner_phone:
            phone = normalize_vn_mobile(owner_phone, field="owner_phone")
            owner = await self.repo.user_by_phone(phone)
            if owner is None:
                raise Invalid(
                    "No one has registered with this phone number yet. Ask the household to register first.",
                    field="owner_phone",
                )
        household = Organization(
            id=uuid.uuid4(),
            name=name,
            kind=OrganizationKind.household,
            cooperative_id=cooperative_id,
            member_code=member_code,
            province=province or cooperative.province,
        )
        self.repo.add(household)
        await self.repo.flush()
        if owner is not None:
            self.repo.add(Membership(user_id=owner.id, organization_id=household.id, role=Role.owner))
            await self.repo.flush()
        return household

    async def member_households(self, access: Access, cooperative_id: uuid.UUID) -> list[Organization]:
        access.require(cooperative_id)
        return await self.repo.member_households(cooperative_id)

    async def memberships(self, access: Access, organization_id: uuid.UUID) -> list[tuple[Membership, User]]:
        access.require(organization_id)
        return await self.repo.memberships(organization_id)

    async def add_membership(
        self, access: Access, organization_id: uuid.UUID, *, phone: str, role: Role
    ) -> tuple[Membership, User]:
        my_role = access.require(organization_id, Role.admin)
        if not outranks_or_equals(my_role, role):
            raise Invalid(f"You cannot give a role higher than your own ({my_role.value}).", field="role")
        user = await self.repo.user_by_phone(normalize_vn_mobile(phone))
        if user is None:
            raise Invalid("No one has registered with this phone number yet.", field="phone")
        if await self.repo.membership_of(user.id, organization_id) is not None:
            raise Conflict("This person is already a member of the organization.", field="phone")
        membership = Membership(user_id=user.id, organization_id=organization_id, role=role)
        self.repo.add(membership)
        await self.repo.flush()
        return membership, user

    async def _membership_in_reach(self, access: Access, membership_id: uuid.UUID) -> Membership:
        return access.reach(await self.repo.membership(membership_id), "Membership")

    async def change_role(self, access: Access, membership_id: uuid.UUID, role: Role) -> tuple[Membership, User]:
        membership = await self._membership_in_reach(access, membership_id)
        my_role = access.require(membership.organization_id, Role.admin)
        if not outranks_or_equals(my_role, role) or not outranks_or_equals(my_role, membership.role):
            raise Invalid(f"You cannot change a role above your own ({my_role.value}).", field="role")
        if membership.role is Role.owner and role is not Role.owner:
            await self._keep_an_owner(membership.organization_id)
        membership.role = role
        await self.repo.flush()
        user = await self.repo.user_by_id(membership.user_id)
        assert user is not None
        return membership, user

    async def remove_membership(self, access: Access, membership_id: uuid.UUID) -> None:
        membership = await self._membership_in_reach(access, membership_id)
        my_role = access.require(membership.organization_id, Role.admin)
        if not outranks_or_equals(my_role, membership.role):
            raise Invalid("You cannot remove someone with a higher role than yours.", field="membership_id")
        if membership.role is Role.owner:
            await self._keep_an_owner(membership.organization_id)
        await self.repo.session.delete(membership)
        await self.repo.flush()

    async def _keep_an_owner(self, organization_id: uuid.UUID) -> None:
        if await self.repo.owner_count(organization_id) <= 1:
            raise Conflict("An organization must keep at least one owner. Make someone else owner first.")

    # -- API tokens -------------------------------------------------------------------------------------------

    async def create_api_token(
        self, principal: Principal, *, name: str, organization_id: uuid.UUID, expires_in_days: int | None
    ) -> tuple[ApiToken, str]:
        principal.access.require(organization_id, Role.admin)
        token = new_token("agm")
        now = utcnow()
        api_token = ApiToken(
            token_hash=token_hash(token),
            prefix=token[:10],
            name=name,
            user_id=principal.user.id,
            organization_id=organization_id,
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
        self.repo.add(api_token)
        await self.repo.flush()
        return api_token, token

    async def api_tokens(self, principal: Principal) -> list[ApiToken]:
        return await self.repo.api_tokens(principal.user.id)

    async def revoke_api_token(self, principal: Principal, token_id: uuid.UUID) -> None:
        api_token = await self.repo.api_token(token_id)
        if api_token is None or api_token.user_id != principal.user.id or api_token.revoked_at is not None:
            raise NotFound("API token not found.")
        api_token.revoked_at = utcnow()
        await self.repo.flush()
