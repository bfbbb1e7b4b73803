"""Sign-in over plain HTTP: form posts for local accounts, and OIDC login with its callback.

The sign-in and sign-up forms post here; the answer sets (or clears) the session cookie and
redirects the browser back to the UI (CHATBOT_APP_URL): to `/` on success, or to the form with
`?error=<code>` (a key of AUTH_MESSAGES) on refusal. Only this HTTP answer can set an HttpOnly
cookie: the Reflex websocket cannot, which is why sign-in is not a Reflex event handler.

These paths are outside /api, so ApiGuard leaves them to the browser's cookie; chatbot_app/origin_guard.py
turns away requests to them from any web origin but the app's own.

The session cookie is `__Host-chatbot_session` (Secure, Path=/, no Domain) when the app is served over
HTTPS, so that no sibling subdomain can plant one; `chatbot_session` over plain HTTP (development).
"""

from __future__ import annotations

import hmac
import logging
from functools import lru_cache
from typing import Annotated
from urllib.parse import quote, urlencode, urlsplit

from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from chatbot_app.api.auth import request_address
from chatbot_app.config import Settings, get_settings
from chatbot_app.services.accounts import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    SIGN_IN_EMAIL_COOKIE,
    AuthError,
    session_cookie_name,
    session_token,
)
from chatbot_app.services.wiring import services
from chatbot_app.storage.models import User

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth", tags=["sign-in"], include_in_schema=False)

#: The session cookie outlives any session (browsers cap cookies at 400 days); the server decides expiry.
COOKIE_MAX_AGE_S = 400 * 24 * 3600
#: Holds one OIDC login's state, PKCE verifier and nonce between the redirect out and the callback.
OIDC_FLOW_COOKIE = "chatbot_oidc_flow"
OIDC_FLOW_MAX_AGE_S = 600


def _secure(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.served_over_https


def _session_token(request: Request, settings: Settings) -> str | None:
    return session_token(request.headers.get("cookie"), settings.served_over_https)


def _to_app(settings: Settings, path: str, error: str | None = None) -> RedirectResponse:
    query = f"?{urlencode({'error': error})}" if error else ""
    return RedirectResponse(settings.app_url + path + query, status_code=303)


def _same_site_origin(request: Request, settings: Settings) -> bool:
    """A form post from the UI itself (or a client sending no Origin): refuses cross-site login CSRF."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = {_origin(settings.app_url), f"{request.url.scheme}://{request.url.netloc}", *settings.cors_origins}
    return origin.rstrip("/") in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _signed_in(request: Request, settings: Settings, user: User, token: str) -> RedirectResponse:
    # A temporary password (an admin's reset, or an admin-made account) is changed before anything else.
    response = _to_app(settings, "/account" if user.must_change_password else "/")
    secure = _secure(request, settings)
    response.set_cookie(
        session_cookie_name(secure),
        token,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    log.info("signed in", extra={"user_id": user.id})
    return response


@router.post("/sign-in")
async def sign_in(
    request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
) -> Response:
    settings = get_settings()
    if not _same_site_origin(request, settings):
        return _to_app(settings, "/login", "invalid")
    accounts = services().accounts
    try:
        user = await accounts.sign_in(email, password, request_address(request, settings))
    except AuthError as refused:
        response = _to_app(settings, "/login", refused.code)
        # The form shows the email again (never the password): in a short-lived cookie, not in the URL.
        response.set_cookie(
            SIGN_IN_EMAIL_COOKIE,
            quote(email[:320]),
            max_age=600,
            path="/",
            httponly=True,
            samesite="strict",
            secure=_secure(request, settings),
        )
        return response
    response = _signed_in(request, settings, user, await accounts.start_session(user))
    response.delete_cookie(SIGN_IN_EMAIL_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/sign-up")
async def sign_up(
    request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
) -> Response:
    settings = get_settings()
    if not _same_site_origin(request, settings):
        return _to_app(settings, "/signup", "invalid")
    accounts = services().accounts
    try:
        user = await accounts.sign_up(email, password, request_address(request, settings))
    except AuthError as refused:
        return _to_app(settings, "/signup", refused.code)
    return _signed_in(request, settings, user, await accounts.start_session(user))


async def _signed_out(request: Request, everywhere: bool) -> Response:
    settings = get_settings()
    token = _session_token(request, settings)
    accounts = services().accounts
    if everywhere and (user := await accounts.user_for_session(token)) is not None:
        await accounts.end_all_sessions(user.id)  # type: ignore[arg-type]
    await accounts.end_session(token)
    response = _to_app(settings, "/login")
    for name, secure in ((SESSION_COOKIE, False), (SECURE_SESSION_COOKIE, True)):
        if name in request.cookies:
            response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=secure)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End this browser's session (SameSite=Strict: another site cannot post this with the cookie)."""
    return await _signed_out(request, everywhere=False)


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(request: Request) -> Response:
    """End every session of the signed-in user."""
    return await _signed_out(request, everywhere=True)


@router.get("/session")
async def current_session(request: Request) -> Response:
    """Who this cookie signs in (for the UI and tests); 401 when nobody. Never returns the token."""
    user = await services().accounts.user_for_session(_session_token(request, get_settings()))
    if user is None:
        return JSONResponse({"signed_in": False}, status_code=401)
    return JSONResponse(
        {
            "signed_in": True,
            "email": user.email,
            "admin": user.is_admin,
            "owner_id": user.owner_id,
            "must_change_password": user.must_change_password,
        }
    )


# --- Single sign-on (OIDC) ----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _oidc_client(issuer: str, client_id: str, client_secret: str) -> StarletteOAuth2App:
    """authlib's client for the provider: discovery document, PKCE (S256), ID-token checks, JWKS."""
    oauth = OAuth()
    return oauth.register(  # type: ignore[no-any-return]
        "sso",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
    )


def oidc_client(settings: Settings) -> StarletteOAuth2App:
    assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
    return _oidc_client(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret)


def _callback_url(request: Request, settings: Settings) -> str:
    base = settings.oidc_redirect_base or f"{request.url.scheme}://{request.url.netloc}"
    return base + "/auth/oidc/callback"


def email_allowed(email: str | None, verified: object, domains: tuple[str, ...]) -> bool:
    """With an allowlist: an email the provider has not marked unverified, in one of the domains."""
    if not domains:
        return True
    if not email or verified is False:
        return False
    return email.rpartition("@")[2].lower() in domains


def email_verified(claims: dict[str, object]) -> bool:
    """Whether the provider vouches for the email (OIDC Core's boolean; some providers send the string)."""
    return claims.get("email_verified") in (True, "true")


@router.get("/oidc/login")
async def oidc_login(request: Request) -> Response:
    settings = get_settings()
    if "oidc" not in settings.auth_methods:
        return _to_app(settings, "/login", "method_off")
    try:
        flow = await oidc_client(settings).create_authorization_url(_callback_url(request, settings))
    except Exception:
        log.exception("OIDC provider unreachable")
        return _to_app(settings, "/login", "oidc_failed")
    response = RedirectResponse(flow["url"], status_code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation, which Strict would strip.
    response.set_cookie(
        OIDC_FLOW_COOKIE,
        ".".join((flow["state"], flow["code_verifier"], flow["nonce"])),
        max_age=OIDC_FLOW_MAX_AGE_S,
        path="/auth/oidc",
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )
    return response


@router.get("/oidc/callback")
async def oidc_callback(request: Request) -> Response:
    """Finish a login: the state must match this browser's flow cookie, which is then spent."""
    settings = get_settings()
    if "oidc" not in settings.auth_methods:
        return _to_app(settings, "/login", "method_off")
    state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
    stored_state, _, rest = request.cookies.get(OIDC_FLOW_COOKIE, "").partition(".")
    verifier, _, nonce = rest.partition(".")

    def refused(code: str) -> Response:
        response = _to_app(settings, "/login", code)
        response.delete_cookie(OIDC_FLOW_COOKIE, path="/auth/oidc")
        return response

    if not (stored_state and state and code and verifier and nonce) or not hmac.compare_digest(stored_state, state):
        log.warning("OIDC callback refused: state missing or not this browser's")
        return refused("oidc_failed")
    client = oidc_client(settings)
    try:
        # The provider refuses a code it has seen before (and the flow cookie is gone after one use).
        token = await client.fetch_access_token(
            redirect_uri=_callback_url(request, settings), code=code, code_verifier=verifier
        )
        claims = dict(await client.parse_id_token(token, nonce=nonce) or {})
        if claims.get("sub") and "email" not in claims:
            # Providers may keep scope claims out of the ID token (OIDC Core 5.4): ask userinfo.
            profile = await client.userinfo(token=token)
            if profile.get("sub") == claims["sub"]:
                claims |= {name: profile.get(name) for name in ("email", "email_verified")}
    except Exception as exc:
        log.warning("OIDC callback refused: %s", type(exc).__name__)
        return refused("oidc_failed")
    if not claims.get("sub"):
        return refused("oidc_failed")
    email = (claims.get("email") or "").strip().lower() or None
    if not email_allowed(email, claims.get("email_verified"), settings.oidc_email_domains):
        return refused("oidc_domain")
    issuer = (await client.load_server_metadata())["issuer"]
    accounts = services().accounts
    try:
        user = await accounts.oidc_user(issuer, str(claims["sub"]), email, email_verified(claims))
    except AuthError as refusal:
        return refused(refusal.code)
    response = _signed_in(request, settings, user, await accounts.start_session(user))
    response.delete_cookie(OIDC_FLOW_COOKIE, path="/auth/oidc")
    return response
