"""Request dependencies: the transaction, the caller, and the services built on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from agrimarket.accounts.repository import AccountRepository
from agrimarket.accounts.service import AccountService, Principal
from agrimarket.config import Settings
from agrimarket.db import transaction
from agrimarket.errors import Forbidden, NotAuthenticated
from agrimarket.observability import bind_log_context

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on every request.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, rolled back when it raises.

    Function-scoped (see ``SessionDep``): the commit happens before the response is sent, so a commit that fails
    answers with an error instead of a success the database never kept. Reads begin deferred on SQLite; writes
    take the write lock up front (``BEGIN IMMEDIATE``).
    """
    state = request.app.state
    maker = state.read_sessionmaker if request.method in SAFE_METHODS else state.sessionmaker
    async with transaction(maker) as session:
        yield session


async def get_write_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A writing transaction whatever the method: for a GET that writes, such as a marketplace's redirect back.
    Declare it after the caller's dependencies, so it closes before the request's reading session does."""
    async with transaction(request.app.state.sessionmaker) as session:
        yield session


# scope="function": FastAPI's default runs a yield dependency's exit after the response has gone out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[AsyncSession, Depends(get_write_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_account_service(request: Request, session: SessionDep) -> AccountService:
    return AccountService(AccountRepository(session), request.app.state.read_sessionmaker)


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def get_optional_principal(
    request: Request, accounts: AccountServiceDep, settings: SettingsDep
) -> Principal | None:
    principal: Principal | None = None
    if (token := _bearer(request)) is not None:
        principal = await accounts.principal_from_api_token(token)
        if principal is None:
            raise NotAuthenticated("The API token is unknown, revoked or expired.")
        if principal.token_needs_touch and principal.api_token_id is not None:
            # Its own short write transaction: a read request's transaction must stay read-only on SQLite.
            async with transaction(request.app.state.sessionmaker) as write_session:
                await AccountService(AccountRepository(write_session)).touch_api_token(principal.api_token_id)
    elif (cookie := request.cookies.get(settings.session_cookie_name)) is not None:
        principal = await accounts.principal_from_session(cookie)
        if principal is not None and request.method not in SAFE_METHODS:
            # A cookie rides along on cross-site requests; a browser says where a request came from.
            site = request.headers.get("sec-fetch-site")
            if site is not None and site not in {"same-origin", "none"}:
                raise Forbidden("Cross-site request refused.")
    if principal is not None:
        request.state.user_id = principal.user.id
        bind_log_context(user_id=str(principal.user.id))
    return principal


async def get_principal(principal: Annotated[Principal | None, Depends(get_optional_principal)]) -> Principal:
    if principal is None:
        raise NotAuthenticated("Log in first, or send an API token as `Authorization: Bearer <token>`.")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
