"""Clinician accounts: first-run setup, administration, signing in and out.

Secrets handed out (sign-in cookies, one-time links) are 256-bit random tokens; only
their SHA-256 is stored. Passwords are hashed with argon2id off the event loop (see
:class:`~telecircle.crypto.passwords.PasswordHasher`); a hash is computed only after
the cheap checks (input rules, link still usable) pass. Sign-in failures are counted
per address and per account (:class:`AttemptLimiter`); a successful sign-in clears the
account's count. Every change is recorded on the audit sink with ids only.

Public methods raise the refusals of :mod:`telecircle.services.account_errors`,
:class:`~telecircle.domain.account_rules.InvalidAccountDetails`,
:class:`~telecircle.crypto.passwords.WeakPassword` and
:class:`~telecircle.crypto.passwords.Busy`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from telecircle.config import Settings
from telecircle.crypto import totp
from telecircle.crypto.passwords import MAX_PASSWORD_LENGTH, Busy, PasswordHasher, check_password
from telecircle.crypto.tokens import new_secret, secret_hash
from telecircle.domain.access import Role
from telecircle.domain.account_rules import (
    USERNAME_MAX,
    check_account_role,
    check_display_name,
    check_username,
    normalize_username,
)
from telecircle.services import account_errors as errors
from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.services.ratelimit import AttemptLimiter
from telecircle.storage import accounts_store as store
from telecircle.storage.accounts_store import LinkPurpose, UserRecord
from telecircle.storage.database import Database

log = logging.getLogger(__name__)

OnDisabled = Callable[[str], Awaitable[None]]

# A sign-in's last_seen_at is written at most this often (seconds): not once a request.
TOUCH_INTERVAL = 60.0
# Longest an on_disabled callback may take before it is abandoned (seconds).
CALLBACK_TIMEOUT = 10.0
# Accounts whose last accepted TOTP time step is remembered (refusing replayed codes).
TOTP_MEMORY = 10_000
# Longest address kept as a rate-limit key (a longer one is cut, bounding memory).
ADDRESS_KEY_MAX = 64


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Who a sign-in cookie belongs to. While ``second_factor_pending`` the session may
    only complete (or enrol) its second factor."""

    user: UserRecord
    session_id: str
    csrf_token: str = field(repr=False)
    second_factor_pending: bool


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A new sign-in: ``session_token`` goes into the cookie (and nowhere else)."""

    session_token: str = field(repr=False)
    csrf_token: str = field(repr=False)
    second_factor_pending: bool
    user: UserRecord
    expires_at: float


class AccountService:
    """Accounts, links and sign-in sessions over one database. See the module docstring."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditSink,
        hasher: PasswordHasher,
        settings: Settings,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._hasher = hasher
        self._settings = settings
        limit, window = settings.login_attempts_per_window, settings.login_window
        self._by_address = AttemptLimiter(limit, window, clock)
        self._by_account = AttemptLimiter(limit, window, clock)
        self._on_disabled: list[OnDisabled] = []
        self._last_totp_step: OrderedDict[str, int] = OrderedDict()

    def on_disabled(self, callback: OnDisabled) -> None:
        """Call ``callback(user_id)`` after each account is disabled (e.g. to end the
        user's seats in live sessions). A failing or slow callback is logged, not raised."""
        self._on_disabled.append(callback)

    # ------------------------------------------------------------------ first run

    async def needs_setup(self) -> bool:
        """True while no (enabled) administrator account exists."""
        return not await store.any_administrator_exists(self._db)

    async def create_setup_link(self) -> str | None:
        """A new first-run setup token (valid ``setup_link_ttl``), replacing earlier
        unused ones; None when an administrator exists."""
        if not await self.needs_setup():
            return None
        token = new_secret()
        now = self._clock.now()
        await store.create_link(
            self._db,
            token_hash=secret_hash(token),
            purpose="setup",
            user_id=None,
            created_by=None,
            now=now,
            expires_at=now + self._settings.setup_link_ttl,
        )
        await self._audit.record("setup_link_created", actor=None)
        return token

    async def check_link(self, token: str, purpose: LinkPurpose) -> bool:
        """True if ``token`` is a usable link for ``purpose`` right now (consumes nothing).

        For showing the form; submitting it may still find the link gone.
        """
        now = self._clock.now()
        link = await store.get_usable_link(self._db, secret_hash(token), purpose, now)
        if link is None:
            return False
        if purpose == "setup":
            return await self.needs_setup()
        user = await store.get_user(self._db, link.user_id or "")
        return user is not None and not user.disabled

    async def complete_setup(
        self, token: str, username: str, display_name: str, password: str, address: str
    ) -> UserRecord:
        """Create the first administrator with the setup link ``token``.

        Input is checked before the link is used, so a refusal for a bad username,
        name or password leaves the link usable. Of concurrent completions one wins;
        the rest get :class:`LinkInvalid`, as does an unknown, used or expired link or
        one used after an administrator appeared.
        """
        token_hash = secret_hash(token)
        if not await self.check_link(token, "setup"):
            raise errors.LinkInvalid()
        name = check_username(username)
        shown = check_display_name(display_name)
        check_password(password, min_length=self._settings.password_min_length, username=name)
        password_hash = await self._hasher.hash(password)
        try:
            user = await store.create_first_administrator(
                self._db,
                token_hash=token_hash,
                username=name,
                display_name=shown,
                password_hash=password_hash,
                now=self._clock.now(),
            )
        except store.DuplicateUsername:
            raise errors.UsernameTaken() from None
        if user is None:
            raise errors.LinkInvalid()
        await self._audit.record("setup_completed", actor=user.id, target=user.id, address=address)
        return user

    # ------------------------------------------------------------- administration

    async def list_users(self) -> list[UserRecord]:
        """Every account, by username."""
        return await store.list_users(self._db)

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The account with id ``user_id``, if any."""
        return await store.get_user(self._db, user_id)

    async def find_user(self, username: str) -> UserRecord | None:
        """The account with ``username`` (any case, surrounding spaces ignored), if any."""
        name = normalize_username(username)
        if len(name) > USERNAME_MAX:
            return None
        return await store.get_user_by_username(self._db, name)

    async def create_account(
        self, actor_id: str, username: str, display_name: str, role: Role, address: str
    ) -> tuple[UserRecord, str]:
        """Create an account without a password, and a set-password link token for it
        (valid ``account_link_ttl``). ``actor_id`` must be an enabled administrator."""
        await self._require_administrator(actor_id)
        name = check_username(username)
        shown = check_display_name(display_name)
        check_account_role(role)
        try:
            user = await store.create_user(
                self._db, username=name, display_name=shown, role=role, now=self._clock.now()
            )
        except store.DuplicateUsername:
            raise errors.UsernameTaken() from None
        await self._audit.record(
            "account_created",
            actor=actor_id,
            target=user.id,
            address=address,
            details={"role": role.value},
        )
        token = await self._new_password_link(actor_id, user.id, address)
        return user, token

    async def create_password_link(self, actor_id: str, user_id: str, address: str) -> str:
        """A new set-password (reset) link token for an enabled account; its earlier
        unused links stop working. ``actor_id`` must be an enabled administrator."""
        await self._require_administrator(actor_id)
        user = await store.get_user(self._db, user_id)
        if user is None:
            raise errors.AccountNotFound()
        if user.disabled:
            raise errors.AccountDisabled()
        return await self._new_password_link(actor_id, user_id, address)

    async def set_password_with_link(self, token: str, password: str, address: str) -> UserRecord:
        """Set the password of the link's account and end all its sign-ins.

        The password is checked before the link is used (a refusal keeps it usable).
        Raises :class:`LinkInvalid` for an unusable link or a disabled account.
        """
        now = self._clock.now()
        token_hash = secret_hash(token)
        link = await store.get_usable_link(self._db, token_hash, "set_password", now)
        user = None if link is None else await store.get_user(self._db, link.user_id or "")
        if user is None or user.disabled:
            raise errors.LinkInvalid()
        check_password(
            password, min_length=self._settings.password_min_length, username=user.username
        )
        password_hash = await self._hasher.hash(password)
        updated = await store.use_password_link(
            self._db, token_hash=token_hash, password_hash=password_hash, now=self._clock.now()
        )
        if updated is None:
            raise errors.LinkInvalid()
        self._by_account.reset(_account_key(updated.username))
        await self._audit.record("password_set", actor=user.id, target=user.id, address=address)
        return updated

    async def disable(self, actor_id: str, user_id: str, address: str) -> UserRecord:
        """Disable an account: its sign-ins end and its links stop working at once, then
        every ``on_disabled`` callback runs. Administrators cannot disable themselves,
        nor the last enabled administrator."""
        await self._require_administrator(actor_id)
        if actor_id == user_id:
            raise errors.CannotDisableSelf()
        try:
            user = await store.set_disabled(self._db, user_id, True, self._clock.now())
        except store.UserNotFound:
            raise errors.AccountNotFound() from None
        except store.LastAdministrator:
            raise errors.LastAdministrator() from None
        await self._audit.record(
            "account_disabled", actor=actor_id, target=user_id, address=address
        )
        for callback in list(self._on_disabled):
            try:
                async with asyncio.timeout(CALLBACK_TIMEOUT):
                    await callback(user_id)
            except Exception:
                log.exception("on_disabled callback failed", extra={"user_id": user_id})
        return user

    async def enable(self, actor_id: str, user_id: str, address: str) -> UserRecord:
        """Enable a disabled account (its old links stay invalid: send a new one)."""
        await self._require_administrator(actor_id)
        try:
            user = await store.set_disabled(self._db, user_id, False, self._clock.now())
        except store.UserNotFound:
            raise errors.AccountNotFound() from None
        await self._audit.record("account_enabled", actor=actor_id, target=user_id, address=address)
        return user

    # -------------------------------------------------------------------- sign-in

    async def login(
        self,
        username: str,
        password: str,
        address: str,
        *,
        require_second_factor: bool = False,
    ) -> LoginOutcome:
        """Check a username and password and start a sign-in session.

        Raises :class:`TooManyAttempts` when this address or account has failed too
        often, else :class:`LoginFailed` — one message for every cause, after the same
        argon2 work. The session's second factor is pending when the account has TOTP
        or ``require_second_factor`` is set (then, without TOTP, the user must enrol).
        """
        name = normalize_username(username)[:USERNAME_MAX]
        keys = (_address_key(address), _account_key(name))
        await self._refuse_if_limited(keys, name, address)
        # Failures are counted when known, so attempts already being checked can pass
        # the limit; the hasher's bounded backlog bounds that overshoot.
        user, reason = await self._check_password(name, password)
        if user is None or reason is not None:
            self._count_failure(keys)
            target = None if user is None else user.id
            await self._audit.record(
                "login_failed",
                actor=None,
                target=target,
                address=address,
                details={"reason": reason or "unknown_user"},
            )
            raise errors.LoginFailed()
        self._by_account.reset(keys[1])
        pending = user.totp_enabled or require_second_factor
        token, csrf = new_secret(), new_secret()
        now = self._clock.now()
        session = await store.create_login_session(
            self._db,
            session_id=secret_hash(token),
            user_id=user.id,
            csrf_token=csrf,
            second_factor_pending=pending,
            now=now,
            expires_at=now + self._settings.login_max_age,
        )
        await self._audit.record(
            "login", actor=user.id, address=address, details={"second_factor_pending": pending}
        )
        return LoginOutcome(token, csrf, pending, user, session.expires_at)

    async def complete_second_factor(
        self, session_token: str, code: str, address: str
    ) -> AuthContext:
        """Accept the TOTP ``code`` for a sign-in waiting for it; returns the now full
        sign-in. Counted against the same limits as passwords; a code is accepted once.
        Raises :class:`NotSignedIn`, :class:`SecondFactorNotSetUp`,
        :class:`TooManyAttempts` or :class:`CodeRejected`."""
        context = await self.authenticate(session_token)
        if context is None:
            raise errors.NotSignedIn()
        if not context.second_factor_pending:
            return context
        user = context.user
        credentials = await store.get_credentials(self._db, user.id)
        secret = None if credentials is None else credentials.totp_secret
        if secret is None:
            raise errors.SecondFactorNotSetUp()
        await self._check_code(user, secret, code, address, remember=True)
        if not await store.mark_second_factor_done(self._db, context.session_id, self._clock.now()):
            raise errors.NotSignedIn()
        await self._audit.record(
            "login", actor=user.id, address=address, details={"second_factor": "totp"}
        )
        return replace(context, second_factor_pending=False)

    async def begin_totp_enrolment(self, user_id: str) -> tuple[str, str]:
        """A fresh TOTP secret and its ``otpauth://`` URI, for the user's authenticator
        app. Nothing is stored until :meth:`confirm_totp`."""
        user = await store.get_user(self._db, user_id)
        if user is None or user.disabled:
            raise errors.AccountNotFound()
        secret = totp.new_secret()
        return secret, totp.provisioning_uri(secret, user.username)

    async def confirm_totp(
        self,
        user_id: str,
        secret: str,
        code: str,
        address: str,
        *,
        session_token: str | None = None,
    ) -> None:
        """Turn TOTP on with ``secret`` once ``code`` proves the app has it (replacing
        any earlier secret). With ``session_token`` (a sign-in of this user waiting for
        its second factor), that sign-in is completed too.

        Raises :class:`AccountNotFound`, :class:`TooManyAttempts` or
        :class:`CodeRejected` (also for a malformed secret).
        """
        user = await store.get_user(self._db, user_id)
        if user is None or user.disabled:
            raise errors.AccountNotFound()
        if not totp.is_valid_secret(secret) or len(secret) > 64:
            raise errors.CodeRejected()
        # Not remembered as used: the same code may then complete a pending sign-in.
        await self._check_code(user, secret, code, address, remember=False)
        await store.set_totp_secret(self._db, user_id, secret)
        self._last_totp_step.pop(user_id, None)
        await self._audit.record("totp_enabled", actor=user_id, target=user_id, address=address)
        if session_token:
            context = await self.authenticate(session_token)
            if context is not None and context.user.id == user_id:
                await store.mark_second_factor_done(self._db, context.session_id, self._clock.now())

    async def authenticate(self, session_token: str) -> AuthContext | None:
        """The sign-in a cookie secret stands for, or None when it is unknown, ended,
        idle longer than ``login_idle_timeout``, older than ``login_max_age``, or its
        account is disabled. Notes activity at most once a minute."""
        if not session_token:
            return None
        found = await store.get_signed_in(self._db, secret_hash(session_token))
        if found is None:
            return None
        session, user = found
        now = self._clock.now()
        if session.ended_at is not None or user.disabled:
            return None
        idle = now - session.last_seen_at
        if now >= session.expires_at or idle > self._settings.login_idle_timeout:
            await store.end_login_session(self._db, session.id, now)
            return None
        if idle >= TOUCH_INTERVAL:
            await store.touch_login_session(self._db, session.id, now)
        return AuthContext(user, session.id, session.csrf_token, session.second_factor_pending)

    async def logout(self, session_token: str, address: str | None = None) -> None:
        """End the sign-in ``session_token`` stands for. Idempotent."""
        if not session_token:
            return
        user_id = await store.end_login_session(
            self._db, secret_hash(session_token), self._clock.now()
        )
        if user_id is not None:
            await self._audit.record("logout", actor=user_id, address=address)

    async def sign_out_everywhere(self, user_id: str, address: str) -> int:
        """End every sign-in of the account; returns how many were open."""
        ended = await store.end_user_sessions(self._db, user_id, self._clock.now())
        await self._audit.record(
            "sign_out_everywhere",
            actor=user_id,
            target=user_id,
            address=address,
            details={"sessions": ended},
        )
        return ended

    # -------------------------------------------------------------------- helpers

    async def _require_administrator(self, actor_id: str) -> None:
        actor = await store.get_user(self._db, actor_id)
        if actor is None or actor.disabled or actor.role is not Role.ADMINISTRATOR:
            raise errors.NotAllowed()

    async def _new_password_link(self, actor_id: str, user_id: str, address: str) -> str:
        token = new_secret()
        now = self._clock.now()
        await store.create_link(
            self._db,
            token_hash=secret_hash(token),
            purpose="set_password",
            user_id=user_id,
            created_by=actor_id,
            now=now,
            expires_at=now + self._settings.account_link_ttl,
        )
        await self._audit.record(
            "password_link_created", actor=actor_id, target=user_id, address=address
        )
        return token

    async def _check_password(
        self, name: str, password: str
    ) -> tuple[UserRecord | None, str | None]:
        """The account and None if ``password`` is right for an enabled account named
        ``name``; else the account (if any) and why not. Always one argon2 verification."""
        if len(password) > MAX_PASSWORD_LENGTH:
            await self._hasher.verify_dummy(password[: MAX_PASSWORD_LENGTH + 1])
            return None, "too_long"
        user = await store.get_user_by_username(self._db, name)
        credentials = None if user is None else await store.get_credentials(self._db, user.id)
        stored = None if credentials is None else credentials.password_hash
        if user is None or stored is None:
            await self._hasher.verify_dummy(password)
            return user, "unknown_user" if user is None else "no_password"
        if not await self._hasher.verify(stored, password):
            return user, "wrong_password"
        if user.disabled:
            return user, "disabled"
        if self._hasher.needs_rehash(stored):
            await self._rehash(user.id, password)
        return user, None

    async def _rehash(self, user_id: str, password: str) -> None:
        """Store a hash with the current parameters; skipped when the hasher is busy."""
        try:
            await store.set_password_hash(self._db, user_id, await self._hasher.hash(password))
        except Busy:
            return

    async def _check_code(
        self, user: UserRecord, secret: str, code: str, address: str, *, remember: bool
    ) -> None:
        keys = (_address_key(address), _account_key(user.username))
        await self._refuse_if_limited(keys, user.username, address)
        step = totp.matching_step(secret, code, self._clock.now())
        last = self._last_totp_step.get(user.id)
        if step is None or (remember and last is not None and step <= last):
            self._count_failure(keys)
            await self._audit.record(
                "login_failed",
                actor=None,
                target=user.id,
                address=address,
                details={"reason": "wrong_code"},
            )
            raise errors.CodeRejected()
        self._by_account.reset(keys[1])
        if remember:
            self._last_totp_step[user.id] = step
            self._last_totp_step.move_to_end(user.id)
            while len(self._last_totp_step) > TOTP_MEMORY:
                self._last_totp_step.popitem(last=False)

    async def _refuse_if_limited(self, keys: tuple[str, str], name: str, address: str) -> None:
        by_address = self._by_address.retry_after(keys[0])
        by_account = self._by_account.retry_after(keys[1])
        if by_address is None and by_account is None:
            return
        target = None
        if by_account is not None:
            user = await store.get_user_by_username(self._db, name)
            target = None if user is None else user.id
        await self._audit.record(
            "rate_limited",
            actor=None,
            target=target,
            address=address,
            details={"scope": "address" if by_address is not None else "account"},
        )
        raise errors.TooManyAttempts(max(by_address or 0.0, by_account or 0.0))

    def _count_failure(self, keys: tuple[str, str]) -> None:
        self._by_address.record_failure(keys[0])
        self._by_account.record_failure(keys[1])


def _address_key(address: str) -> str:
    return "addr:" + address[:ADDRESS_KEY_MAX]


def _account_key(username: str) -> str:
    return "user:" + username
