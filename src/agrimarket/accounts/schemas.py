"""Request and response bodies for accounts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agrimarket.kit.text import Line
from agrimarket.models import OrganizationKind, Role

Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Name = Annotated[Line, StringConstraints(min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    phone: str = Field(description="Vietnamese mobile number, any common spelling: 0912 345 678, +84912345678.")
    password: Password
    full_name: Name
    organization_name: Name
    organization_kind: OrganizationKind = OrganizationKind.household


class LoginIn(Strict):
    phone: str
    password: Annotated[str, StringConstraints(max_length=128)]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    phone: str
    full_name: str
    locale: str


class OrganizationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: OrganizationKind
    cooperative_id: uuid.UUID | None
    member_code: str | None
    province: str | None
    created_at: datetime


class OrganizationWithRole(OrganizationOut):
    role: Role


class MeOut(BaseModel):
    user: UserOut
    organizations: list[OrganizationWithRole]


class RegisterOut(MeOut):
    pass


class OrganizationCreateIn(Strict):
    name: Name
    kind: OrganizationKind
    province: Annotated[Line, StringConstraints(max_length=100)] | None = None


class OrganizationUpdateIn(Strict):
    name: Name | None = None
    province: Annotated[Line, StringConstraints(max_length=100)] | None = None


class MemberHouseholdIn(Strict):
    """A household joining a cooperative; its representative must already have registered."""

    name: Name
    member_code: Annotated[Line, StringConstraints(min_length=1, max_length=50)] | None = None
    owner_phone: str | None = Field(default=None, description="The household representative's registered phone.")
    province: Annotated[Line, StringConstraints(max_length=100)] | None = None


class MembershipIn(Strict):
    phone: str
    role: Role = Role.member


class MembershipUpdateIn(Strict):
    role: Role


class MembershipOut(BaseModel):
    id: uuid.UUID
    organization_id: uuid.UUID
    role: Role
    user: UserOut


class ApiTokenIn(Strict):
    name: Annotated[Line, StringConstraints(min_length=1, max_length=100)]
    organization_id: uuid.UUID
    expires_in_days: Annotated[int, Field(gt=0, le=3650)] | None = None


class ApiTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    organization_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="Shown this once; store it now. Send it as `Authorization: Bearer <token>`.")
