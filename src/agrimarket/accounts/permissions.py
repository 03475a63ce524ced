"""Who may do what where: a user's reach over organizations, computed once per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from agrimarket.errors import Forbidden, NotFound
from agrimarket.models import Role
from agrimarket.observability import bind_log_context

_RANK = {Role.member: 1, Role.admin: 2, Role.owner: 3}


class Owned(Protocol):
    @property
    def organization_id(self) -> uuid.UUID: ...


_Owned = TypeVar("_Owned", bound=Owned)


@dataclass(frozen=True)
class Access:
    """For each organization the user may reach, the role they hold there.

    A cooperative's owners and admins reach its member households as ``admin`` (they manage their products);
    the households' own people reach only their household.
    """

    user_id: uuid.UUID
    roles: dict[uuid.UUID, Role] = field(default_factory=dict)

    def role_in(self, organization_id: uuid.UUID) -> Role | None:
        return self.roles.get(organization_id)

    def require(self, organization_id: uuid.UUID, at_least: Role = Role.member) -> Role:
        """The role held, or 404 for an organization out of reach (its existence is not revealed)."""
        bind_log_context(organization_id=organization_id)  # refused attempts are logged with the organization too
        role = self.roles.get(organization_id)
        if role is None:
            raise NotFound("Organization not found.")
        if _RANK[role] < _RANK[at_least]:
            raise Forbidden(f"This needs the {at_least.value} role or higher in the organization.")
        return role

    def reach(self, obj: _Owned | None, what: str, at_least: Role = Role.member) -> _Owned:
        """The object if its organization is in reach with the role, else 404 (``what`` not found) or 403.

        The one way services look up a tenant's object by id: a foreign object answers exactly like a missing one.
        """
        if obj is None or obj.organization_id not in self.roles:
            raise NotFound(f"{what} not found.")
        self.require(obj.organization_id, at_least)
        return obj

    def can_reach(self, organization_id: uuid.UUID) -> bool:
        return organization_id in self.roles

    @property
    def organization_ids(self) -> list[uuid.UUID]:
        return list(self.roles)


def outranks_or_equals(role: Role, other: Role) -> bool:
    return _RANK[role] >= _RANK[other]
