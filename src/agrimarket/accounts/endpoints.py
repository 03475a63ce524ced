"""Accounts API: register, log in, organizations, memberships, member households, API tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from agrimarket.accounts import schemas
from agrimarket.accounts.service import Principal
from agrimarket.deps import AccountServiceDep, PrincipalDep, SettingsDep
from agrimarket.models import Membership, Organization, Role, User

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def _me(user: User, organizations: list[tuple[Organization, Role]]) -> schemas.MeOut:
    return schemas.MeOut(
        user=schemas.UserOut.model_validate(user),
        organizations=[
            schemas.OrganizationWithRole(**schemas.OrganizationOut.model_validate(org).model_dump(), role=role)
            for org, role in organizations
        ],
    )


def _membership_out(membership: Membership, user: User) -> schemas.MembershipOut:
    return schemas.MembershipOut(
        id=membership.id,
        organization_id=membership.organization_id,
        role=membership.role,
        user=schemas.UserOut.model_validate(user),
    )


def _set_session_cookie(response: Response, token: str, settings: SettingsDep) -> None:
    response.set_cookie(
        settings.session_cookie_name,
        token,
        max_age=settings.session_ttl_hours * 3600,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )


@router.post("/auth/register", status_code=status.HTTP_201_CREATED)
async def register(
    body: schemas.RegisterIn,
    request: Request,
    response: Response,
    accounts: AccountServiceDep,
    settings: SettingsDep,
) -> schemas.MeOut:
    """Register with a Vietnamese mobile number; creates your household or cooperative, and logs you in."""
    user, organization = await accounts.register(
        phone=body.phone,
        password=body.password,
        full_name=body.full_name,
        organization_name=body.organization_name,
        kind=body.organization_kind,
    )
    token = await accounts.start_session(
        user, timedelta(hours=settings.session_ttl_hours), request.headers.get("user-agent")
    )
    _set_session_cookie(response, token, settings)
    return _me(user, [(organization, Role.owner)])


@router.post("/auth/login")
async def login(
    body: schemas.LoginIn,
    request: Request,
    response: Response,
    accounts: AccountServiceDep,
    settings: SettingsDep,
) -> schemas.MeOut:
    """Log in with phone number and password; sets the session cookie."""
    user = await accounts.authenticate(body.phone, body.password)
    token = await accounts.start_session(
        user, timedelta(hours=settings.session_ttl_hours), request.headers.get("user-agent")
    )
    _set_session_cookie(response, token, settings)
    access = await accounts.access_for(user.id)
    return _me(user, await accounts.organizations_of(access))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, accounts: AccountServiceDep, settings: SettingsDep) -> Response:
    """End this browser session."""
    if (cookie := request.cookies.get(settings.session_cookie_name)) is not None:
        await accounts.end_session(cookie)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(settings.session_cookie_name, path="/")
    return response


@router.get("/me")
async def me(principal: PrincipalDep, accounts: AccountServiceDep) -> schemas.MeOut:
    """Who you are and the organizations you can act in, with your role in each."""
    return _me(principal.user, await accounts.organizations_of(principal.access))


@router.get("/organizations")
async def list_organizations(
    principal: PrincipalDep, accounts: AccountServiceDep
) -> list[schemas.OrganizationWithRole]:
    """Organizations you can act in (a cooperative's admins also see its member households)."""
    return _me(principal.user, await accounts.organizations_of(principal.access)).organizations


@router.post("/organizations", status_code=status.HTTP_201_CREATED)
async def create_organization(
    body: schemas.OrganizationCreateIn, principal: PrincipalDep, accounts: AccountServiceDep
) -> schemas.OrganizationOut:
    """Create another household or cooperative, owned by you."""
    _browser_only(principal)
    organization = await accounts.create_organization(
        principal.user, name=body.name, kind=body.kind, province=body.province
    )
    return schemas.OrganizationOut.model_validate(organization)


@router.get("/organizations/{organization_id}")
async def get_organization(
    organization_id: uuid.UUID, principal: PrincipalDep, accounts: AccountServiceDep
) -> schemas.OrganizationWithRole:
    """One organization, with your role in it."""
    organization, role = await accounts.get_organization(principal.access, organization_id)
    return schemas.OrganizationWithRole(**schemas.OrganizationOut.model_validate(organization).model_dump(), role=role)


@router.patch("/organizations/{organization_id}")
async def update_organization(
    organization_id: uuid.UUID,
    body: schemas.OrganizationUpdateIn,
    principal: PrincipalDep,
    accounts: AccountServiceDep,
) -> schemas.OrganizationOut:
    """Rename an organization or set its province (admins and owners)."""
    organization = await accounts.update_organization(
        principal.access, organization_id, name=body.name, province=body.province
    )
    return schemas.OrganizationOut.model_validate(organization)


@router.get("/organizations/{organization_id}/members")
async def list_member_households(
    organization_id: uuid.UUID, principal: PrincipalDep, accounts: AccountServiceDep
) -> list[schemas.OrganizationOut]:
    """A cooperative's member households."""
    households = await accounts.member_households(principal.access, organization_id)
    return [schemas.OrganizationOut.model_validate(h) for h in households]


@router.post("/organizations/{organization_id}/members", status_code=status.HTTP_201_CREATED)
async def add_member_household(
    organization_id: uuid.UUID,
    body: schemas.MemberHouseholdIn,
    principal: PrincipalDep,
    accounts: AccountServiceDep,
) -> schemas.OrganizationOut:
    """Add a member household to a cooperative (cooperative admins and owners)."""
    household = await accounts.add_member_household(
        principal.access,
        organization_id,
        name=body.name,
        member_code=body.member_code,
        owner_phone=body.owner_phone,
        province=body.province,
    )
    return schemas.OrganizationOut.model_validate(household)


@router.get("/organizations/{organization_id}/memberships")
async def list_memberships(
    organization_id: uuid.UUID, principal: PrincipalDep, accounts: AccountServiceDep
) -> list[schemas.MembershipOut]:
    """The people of an organization and their roles."""
    return [_membership_out(m, u) for m, u in await accounts.memberships(principal.access, organization_id)]


@router.post("/organizations/{organization_id}/memberships", status_code=status.HTTP_201_CREATED)
async def add_membership(
    organization_id: uuid.UUID,
    body: schemas.MembershipIn,
    principal: PrincipalDep,
    accounts: AccountServiceDep,
) -> schemas.MembershipOut:
    """Give a registered person a role in the organization (admins and owners)."""
    membership, user = await accounts.add_membership(
        principal.access, organization_id, phone=body.phone, role=body.role
    )
    return _membership_out(membership, user)


@router.patch("/memberships/{membership_id}")
async def change_membership_role(
    membership_id: uuid.UUID,
    body: schemas.MembershipUpdateIn,
    principal: PrincipalDep,
    accounts: AccountServiceDep,
) -> schemas.MembershipOut:
    """Change someone's role (admins and owners; an organization always keeps an owner)."""
    membership, user = await accounts.change_role(principal.access, membership_id, body.role)
    return _membership_out(membership, user)


@router.delete("/memberships/{membership_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_membership(membership_id: uuid.UUID, principal: PrincipalDep, accounts: AccountServiceDep) -> None:
    """Remove someone from an organization."""
    await accounts.remove_membership(principal.access, membership_id)


@router.get("/tokens")
async def list_api_tokens(principal: PrincipalDep, accounts: AccountServiceDep) -> list[schemas.ApiTokenOut]:
    """Your API tokens (never the secret itself)."""
    return [schemas.ApiTokenOut.model_validate(t) for t in await accounts.api_tokens(principal)]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
async def create_api_token(
    body: schemas.ApiTokenIn, principal: PrincipalDep, accounts: AccountServiceDep
) -> schemas.ApiTokenCreated:
    """Create an API token for an integration, acting for one organization; the secret is shown only now."""
    _browser_only(principal)
    api_token, secret = await accounts.create_api_token(
        principal, name=body.name, organization_id=body.organization_id, expires_in_days=body.expires_in_days
    )
    return schemas.ApiTokenCreated(**schemas.ApiTokenOut.model_validate(api_token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_token(token_id: uuid.UUID, principal: PrincipalDep, accounts: AccountServiceDep) -> None:
    """Revoke one of your API tokens at once."""
    await accounts.revoke_api_token(principal, token_id)


def _browser_only(principal: Principal) -> None:
    """A token cannot mint tokens or organizations: a leaked token must not outlive its revocation."""
    from agrimarket.errors import Forbidden

    if principal.api_token_id is not None:
        raise Forbidden("This action needs a logged-in person, not an API token.")
