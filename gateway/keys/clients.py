"""Bot credentials: the gateway-issued keys bots use instead of the real broker keys.

A credential is an Alpaca-shaped pair: ``key_id`` = ``"GK"`` + 18 base32 characters, ``secret``
= 40 URL-safe characters (240 random bits). Two things are kept per credential:

- in ``clients.json``: the SHA-256 of the secret plus the metadata (label, scopes, dialects,
  asset classes, times, IP allowlist, revocation, rotation). Alpaca sends the secret itself in a
  header, so verifying it is one hash and one constant-time compare. A plain hash is enough here:
  the secrets are 240-bit random strings, not passwords, so there is nothing for a slow KDF to
  protect against (no dictionary to try, and 2^240 guesses are out of reach at any speed);
- in the vault, name ``client/{key_id}``: the secret itself, encrypted, because Binance-style
  requests are HMAC-signed and verifying a signature needs the shared secret.

``clients.json`` is authenticated with an HMAC keyed from the master key (``Vault.subkey``), so
editing it by hand (un-revoking, extending an expiry, adding a key) is detected and every
request is then refused until the file is restored: fail closed.

Format::

    {
      "clients": {
        "GK...": {"allowed_ips": ["10.0.0.0/8"] | null, "asset_classes": ["crypto"] | null,
                  "created_at": ISO, "dialects": ["alpaca", "binance-futures"],
                  "expires_at": ISO | null, "key_id": "GK...", "label": "...",
                  "overlap_until": ISO | null, "revoked_at": ISO | null,
                  "rotated_from": "GK..." | null, "rotated_to": "GK..." | null,
                  "scopes": ["trade"], "secret_sha256": hex}
      },
      "format": "gateway-clients", "format_version": 1, "generation": N,
      "mac": hex HMAC-SHA256 over the canonical compact JSON of the rest
    }

The running gateway and ``gatewayctl`` share the file: every ``authenticate`` costs one
``stat`` and reloads when the file changed, so a revocation or a new key from the CLI applies to
the next request. Writes are atomic (``write_private``) under a cross-process lock.

Scopes: ``Caller`` has no scope field, so the gateway asks ``scopes_of(caller.key_id)`` (or
``require_scope(caller.key_id, "trade")``, which raises ``Forbidden``) on order endpoints.
``"trade"`` may place and cancel orders and read; ``"read_only"`` may only read.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import Forbidden, Unauthorized
from ..home import Home, write_private
from ..model import AssetClass, Caller
from ..ports import Authenticator
from .vault import (
    FileWatch,
    SecretNotFound,
    Vault,
    VaultError,
    exclusive_lock,
    parse_iso,
    utc_iso,
)

log = logging.getLogger("gateway.keys.clients")

FORMAT = "gateway-clients"
FORMAT_VERSION = 1
KEY_ID_PREFIX = "GK"
KEY_ID_LENGTH = 20
SECRET_LENGTH = 40
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

SCOPES = frozenset({"trade", "read_only"})
DIALECTS = ("alpaca", "binance-futures")

# Answer for every authentication failure: never says which check failed.
_INVALID = "invalid credentials"
# Compared against when the key id is unknown, so that path costs the same hash + compare.
_DUMMY_DIGEST = hashlib.sha256(b"gateway: no such credential").digest()

AuthFailureHook = Callable[[str, "str | None", str], None]
# Called when a request PROVED it holds a revoked credential's secret (a correct secret or
# signature): the credential has leaked. Never called for a mere claim of a key id.
RevokedUseHook = Callable[[str, "str | None"], None]


class CredentialError(Exception):
    """An operator request on credentials cannot be done (unknown key, bad argument)."""


class ClientStoreError(CredentialError):
    """clients.json cannot be read or failed its integrity check."""


@dataclass(frozen=True)
class IssuedCredential:
    """What ``issue``/``rotate`` hand back once; the secret is never shown again.
    Unpacks as ``key_id, secret = creds.issue()``; its repr shows the key id only."""

    key_id: str
    secret: str = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.key_id, self.secret))


@dataclass(frozen=True, slots=True)
class _Client:
    key_id: str
    label: str
    scopes: frozenset[str]
    dialects: frozenset[str]
    asset_classes: frozenset[AssetClass] | None
    created_at: float
    expires_at: float | None
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    revoked_at: float | None
    rotated_to: str | None
    rotated_from: str | None
    overlap_until: float | None
    secret_sha256: bytes = field(repr=False)

    def refusal(self, now: float) -> str | None:
        """Why this credential is unusable at ``now``, or None (dialect/IP checked apart)."""
        if self.revoked_at is not None:
            return "credential revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "credential expired"
        if self.rotated_to is not None and self.overlap_until is not None and now >= self.overlap_until:
            return f"credential rotated to {self.rotated_to} and its overlap period has ended"
        return None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.rotated_to is not None:
            if self.overlap_until is not None and now >= self.overlap_until:
                return "retired"
            return "rotating"
        return "active"


# ---------------------------------------------------------------------------------------
# helpers


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else utc_iso(ts)


def _ts_or_none(text: Any) -> float | None:
    return None if text is None else parse_iso(text)


def _parse_ip(remote: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(remote, str) or not remote:
        return None
    text = remote.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # IPv6 zone id
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def _bucket_of(remote: str | None) -> str:
    """Failure-counting bucket: the IPv4 address, the IPv6 /64, or "unknown"."""
    ip = _parse_ip(remote)
    if ip is None:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _printable(value: Any, limit: int = 64) -> str:
    """Untrusted text (a key id from a request) made safe for an audit line."""
    if not isinstance(value, str):
        return ""
    return "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in value[:limit])


def _new_key_id() -> str:
    return KEY_ID_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(KEY_ID_LENGTH - len(KEY_ID_PREFIX)))


def _new_secret() -> str:
    secret = secrets.token_urlsafe(30)  # 30 bytes -> exactly 40 base64url characters, no padding
    assert len(secret) == SECRET_LENGTH
    return secret


def _check_label(label: str) -> str:
    if not isinstance(label, str) or len(label) > 200 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in label):
        raise CredentialError("label must be text of at most 200 characters without control characters")
    return label


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        scopes = (scopes,)
    out = sorted(set(scopes))
    unknown = [s for s in out if s not in SCOPES]
    if unknown or not out:
        raise CredentialError(f"scopes must be one of {sorted(SCOPES)}; got {out}")
    if "trade" in out and "read_only" in out:
        raise CredentialError("a credential cannot be both 'trade' and 'read_only'")
    return out


def _check_dialects(dialects: Iterable[str]) -> list[str]:
    if isinstance(dialects, str):
        dialects = (dialects,)
    out = sorted(set(dialects))
    unknown = [d for d in out if d not in DIALECTS]
    if unknown or not out:
        raise CredentialError(f"dialects must be among {list(DIALECTS)}; got {out}")
    return out


def _check_asset_classes(classes: Iterable[AssetClass | str] | None) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, AssetClass)):
        classes = (classes,)
    try:
        out = sorted({AssetClass(c).value for c in classes})
    except ValueError:
        raise CredentialError(f"asset classes must be among {[a.value for a in AssetClass]}") from None
    if not out:
        raise CredentialError("asset_classes must be None (all) or non-empty")
    return out


def _check_ips(allowed_ips: Iterable[str] | None) -> list[str] | None:
    if allowed_ips is None:
        return None
    if isinstance(allowed_ips, str):
        allowed_ips = (allowed_ips,)
    out = []
    for item in allowed_ips:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise CredentialError(f"{item!r} is not an IP address or network") from None
    if not out:
        raise CredentialError("allowed_ips must be None (any address) or non-empty")
    return out


def _check_seconds(value: float | None, what: str, *, allow_zero: bool) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise CredentialError(f"{what} must be a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise CredentialError(f"{what} must be a finite, {'non-negative' if allow_zero else 'positive'} number of seconds")
    return value


def _parse_client(key_id: str, r: dict) -> _Client:
    classes = r.get("asset_classes")
    ips = r.get("allowed_ips")
    digest = bytes.fromhex(r["secret_sha256"])
    if len(digest) != 32 or r["key_id"] != key_id:
        raise ValueError("bad record")
    return _Client(
        key_id=key_id,
        label=str(r.get("label", "")),
        scopes=frozenset(r["scopes"]),
        dialects=frozenset(r["dialects"]),
        asset_classes=None if classes is None else frozenset(AssetClass(c) for c in classes),
        created_at=parse_iso(r["created_at"]),
        expires_at=_ts_or_none(r.get("expires_at")),
        allowed_ips=None if ips is None else tuple(ipaddress.ip_network(n, strict=False) for n in ips),
        revoked_at=_ts_or_none(r.get("revoked_at")),
        rotated_to=r.get("rotated_to"),
        rotated_from=r.get("rotated_from"),
        overlap_until=_ts_or_none(r.get("overlap_until")),
        secret_sha256=digest,
    )


# ---------------------------------------------------------------------------------------


class BotCredentials(Authenticator):
    """Issues, checks, rotates and revokes bot credentials (see the module docstring).

    ``on_auth_failure(key_id, remote, reason)`` is called on every refused authentication with
    the specific reason (for the audit log); the bot only ever sees ``Unauthorized("invalid
    credentials")``. After ``max_failures`` failures from one remote within ``failure_window_s``
    seconds that remote is refused outright for ``block_s`` seconds, valid key or not. Remotes
    are grouped per IPv4 address and per IPv6 /64 (one host usually owns a whole /64); a
    request without a remote address counts under one shared "unknown" bucket.
    ``clock`` returns epoch seconds and is injectable for tests.
    """

    MAX_TRACKED_REMOTES = 10_000

    def __init__(
        self,
        home: Home,
        vault: Vault,
        *,
        clock: Callable[[], float] = time.time,
        on_auth_failure: AuthFailureHook | None = None,
        on_revoked_use: RevokedUseHook | None = None,
        max_failures: int = 10,
        failure_window_s: float = 60.0,
        block_s: float = 300.0,
    ):
        if max_failures < 1 or failure_window_s <= 0 or block_s < 0:
            raise ValueError("max_failures >= 1, failure_window_s > 0 and block_s >= 0 are required")
        self.home = home
        self.path = home.clients
        self.vault = vault
        self.clock = clock
        self.on_auth_failure = on_auth_failure
        self.on_revoked_use = on_revoked_use
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self.block_s = block_s
        self._mac_key = vault.subkey("clients.json")
        self._lock = threading.RLock()
        self._watch = FileWatch(self.path)
        self._loaded = False
        self._doc: dict = self._empty_doc()
        self._records: dict[str, _Client] = {}
        self._store_error: str | None = None
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"BotCredentials({str(self.path)!r})"

    # -- the file -------------------------------------------------------------------------

    @staticmethod
    def _empty_doc() -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "generation": 0, "clients": {}}

    def _mac(self, doc: dict) -> str:
        body = {k: v for k, v in doc.items() if k != "mac"}
        return hmac.new(self._mac_key, _canonical(body), hashlib.sha256).hexdigest()

    def _parse(self, raw: bytes) -> tuple[dict, dict[str, _Client]]:
        modified = ClientStoreError(
            f"{self.path} failed its integrity check: it was modified outside gatewayctl, "
            f"or belongs to another master key; every bot credential is refused until it is restored"
        )
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise modified from None
        if not isinstance(doc, dict) or not isinstance(doc.get("mac"), str):
            raise modified
        if not hmac.compare_digest(self._mac(doc).encode(), doc["mac"].encode("ascii", "replace")):
            raise modified
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise ClientStoreError(f"{self.path} is not a format-{FORMAT_VERSION} gateway credential file")
        try:
            records = {kid: _parse_client(kid, r) for kid, r in doc["clients"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ClientStoreError(f"{self.path} holds a malformed credential record") from None
        return doc, records

    def _refresh(self) -> None:
        """One stat; reload when another process (or this one) replaced the file."""
        if self._loaded and not self._watch.changed():
            return
        self._loaded = True
        try:
            raw = self._watch.read()
        except FileNotFoundError:
            self._watch.forget()
            self._doc, self._records, self._store_error = self._empty_doc(), {}, None
            return
        try:
            self._doc, self._records = self._parse(raw)
            self._store_error = None
        except ClientStoreError as exc:
            self._doc, self._records, self._store_error = self._empty_doc(), {}, str(exc)
            log.error("%s", exc)

    @contextmanager
    def _mutation(self) -> Iterator[dict]:
        with self._lock, exclusive_lock(self.path):
            self._refresh()
            if self._store_error is not None:
                raise ClientStoreError(self._store_error)
            doc = copy.deepcopy(self._doc)
            yield doc
            doc["generation"] = int(doc.get("generation", 0)) + 1
            doc["mac"] = self._mac(doc)
            raw = (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")
            write_private(self.path, raw)
            self._doc, self._records = self._parse(raw)
            self._store_error = None
            self._watch.remember(raw)

    # -- failures and blocking ------------------------------------------------------------

    @staticmethod
    def _bucket(remote: str | None) -> str:
        return _bucket_of(remote)

    def _is_blocked(self, bucket: str, now: float) -> bool:
        if not self._blocked:
            return False
        until = self._blocked.get(bucket)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked[bucket]
        return False

    def _prune(self, now: float) -> None:
        horizon = now - self.failure_window_s
        for b in [b for b, q in self._failures.items() if not q or q[-1] <= horizon]:
            del self._failures[b]
        for b in [b for b, until in self._blocked.items() if until <= now]:
            del self._blocked[b]
        while len(self._failures) > self.MAX_TRACKED_REMOTES:
            del self._failures[next(iter(self._failures))]

    def _fail(self, key_id: Any, remote: str | None, reason: str, now: float, *, count: bool = True) -> Unauthorized:
        if self._blocked and self._is_blocked(self._bucket(remote), now):
            # Already blocked: refuse quietly. Its block was recorded once; recording every
            # further attempt would let anyone fill the audit disk.
            return Unauthorized(_INVALID)
        if count:
            bucket = self._bucket(remote)
            if len(self._failures) >= self.MAX_TRACKED_REMOTES:
                self._prune(now)
            q = self._failures.setdefault(bucket, deque())
            q.append(now)
            horizon = now - self.failure_window_s
            while q and q[0] <= horizon:
                q.popleft()
            if len(q) >= self.max_failures and self.block_s > 0:
                self._blocked[bucket] = now + self.block_s
                del self._failures[bucket]
                reason = (
                    f"{reason}; remote {bucket} blocked for {self.block_s:g} s after "
                    f"{self.max_failures} failures within {self.failure_window_s:g} s"
                )
                log.warning("authentication: remote %s blocked for %g s after repeated failures", bucket, self.block_s)
        hook = self.on_auth_failure
        if hook is not None:
            try:
                hook(_printable(key_id), remote, reason)
            except Exception:  # the hook is for audit; it must not turn a 401 into a 500
                log.exception("on_auth_failure hook failed")
        return Unauthorized(_INVALID)

    def record_failure(self, key_id: str, remote: str | None, reason: str) -> None:
        """For dialects that verify a signature themselves (after ``hmac_secret``): count a bad
        signature toward the remote's block and report it through ``on_auth_failure``."""
        with self._lock:
            self._fail(key_id, remote, reason, self.clock())

    def is_blocked(self, remote: str | None) -> bool:
        with self._lock:
            return self._is_blocked(self._bucket(remote), self.clock())

    def unblock(self, remote: str | None = None) -> None:
        """Lift the block on ``remote`` (or every block) and forget its failures."""
        with self._lock:
            if remote is None:
                self._blocked.clear()
                self._failures.clear()
            else:
                self._blocked.pop(self._bucket(remote), None)
                self._failures.pop(self._bucket(remote), None)

    # -- Authenticator --------------------------------------------------------------------

    def _usable(self, key_id: Any, dialect: str, remote: str | None, now: float) -> _Client:
        """Common checks; returns the record or raises Unauthorized (after reporting why).
        The secret itself is checked by the caller."""
        # A blocked address is NOT refused here: a valid credential still works from it. Blocking
        # valid keys would let anyone who shares the address (a local user, every bot behind one
        # proxy) lock all bots out, and 240-bit secrets need no throttle against guessing. The
        # block silences the failures instead (see _fail).
        self._refresh()
        if self._store_error is not None:
            raise self._fail(key_id, remote, "credential store failed its integrity check", now, count=False)
        if not isinstance(key_id, str) or not key_id:
            raise self._fail(key_id, remote, "missing key id", now)
        rec = self._records.get(key_id)
        if rec is None:
            raise self._fail(key_id, remote, "unknown key id", now)
        return rec

    def _check_rest(self, rec: _Client, dialect: str, remote: str | None, now: float, *, proven: bool) -> None:
        """The credential's standing. ``proven``: the request showed the secret (or a correct
        signature with it), so a revoked credential in use means it has leaked."""
        why = rec.refusal(now)
        if why is None and dialect not in rec.dialects:
            why = f"dialect {_printable(dialect)!r} not allowed for this credential"
        if why is None and rec.allowed_ips is not None:
            ip = _parse_ip(remote)
            if ip is None or not any(ip in net for net in rec.allowed_ips if net.version == ip.version):
                why = f"remote address {_printable(str(remote))} not in the credential's allowlist"
        if why is not None:
            failure = self._fail(rec.key_id, remote, why, now)
            if proven and rec.revoked_at is not None and self.on_revoked_use is not None:
                try:
                    self.on_revoked_use(rec.key_id, remote)
                except Exception:  # a hook must not turn a 401 into a 500
                    log.exception("on_revoked_use hook failed")
            raise failure

    def authenticate(self, key_id: str, secret: str, dialect: str, remote: str | None) -> Caller:
        with self._lock:
            now = self.clock()
            try:
                rec = self._usable(key_id, dialect, remote, now)
            except Unauthorized:
                if isinstance(secret, str):
                    hmac.compare_digest(_sha256(secret), _DUMMY_DIGEST)  # same work on every path
                raise
            if not isinstance(secret, str) or not secret:
                raise self._fail(key_id, remote, "missing secret", now)
            if not hmac.compare_digest(_sha256(secret), rec.secret_sha256):
                raise self._fail(key_id, remote, "wrong secret", now)
            self._check_rest(rec, dialect, remote, now, proven=True)
            return Caller(key_id=rec.key_id, dialect=dialect, remote=remote)

    def hmac_secret(self, key_id: str, dialect: str, remote: str | None) -> tuple[bytes, Caller]:
        """The secret of a usable credential. Its standing is checked before any signature is,
        so nothing here proves the caller holds the key; prefer ``verify_signed``."""
        with self._lock:
            now = self.clock()
            rec = self._usable(key_id, dialect, remote, now)
            self._check_rest(rec, dialect, remote, now, proven=False)
            return self._secret_of(rec, remote, now), Caller(key_id=rec.key_id, dialect=dialect, remote=remote)

    def verify_signed(
        self, key_id: str, dialect: str, remote: str | None, signed_with: Callable[[bytes], bool]
    ) -> Caller:
        """Signature first, then standing: ``signed_with(secret)`` says whether the request was
        signed with the credential's secret. Only a correctly signed request reaches the
        revocation, expiry, dialect and address checks, so merely naming a revoked key id (with
        any signature) is a plain bad signature and cannot trigger ``on_revoked_use``."""
        with self._lock:
            now = self.clock()
            rec = self._usable(key_id, dialect, remote, now)
            secret = self._secret_of(rec, remote, now)
            if not signed_with(secret):
                raise self._fail(rec.key_id, remote, "bad request signature", now)
            self._check_rest(rec, dialect, remote, now, proven=True)
            return Caller(key_id=rec.key_id, dialect=dialect, remote=remote)

    def _secret_of(self, rec: _Client, remote: str | None, now: float) -> bytes:
        try:
            return self.vault.get(f"client/{rec.key_id}")
        except SecretNotFound:
            refused = rec.refusal(now)
            if refused is not None:  # a dead credential whose secret was pruned: nothing to prove
                raise self._fail(rec.key_id, remote, f"{refused} (secret pruned)", now) from None
            raise self._fail(rec.key_id, remote, "credential secret missing from the key store", now, count=False) from None
        except VaultError as exc:
            log.error("key store unusable while verifying a bot signature: %s", exc)
            raise self._fail(rec.key_id, remote, "key store unreadable", now, count=False) from None

    # -- scopes ---------------------------------------------------------------------------

    def scopes_of(self, key_id: str) -> frozenset[str]:
        """The scopes of ``key_id`` (``{"trade"}`` or ``{"read_only"}``); empty when unknown.
        ``Caller`` carries no scope, so order endpoints ask here (or use require_scope)."""
        with self._lock:
            self._refresh()
            rec = self._records.get(key_id)
            return rec.scopes if rec is not None else frozenset()

    def require_scope(self, key_id: str, scope: str = "trade") -> None:
        """Raise Forbidden unless ``key_id`` holds ``scope``."""
        if scope not in self.scopes_of(key_id):
            raise Forbidden(f"this credential lacks the '{scope}' scope")

    def asset_classes_of(self, key_id: str) -> frozenset[AssetClass] | None:
        """Asset classes ``key_id`` may trade; None means all (and for an unknown key: empty)."""
        with self._lock:
            self._refresh()
            rec = self._records.get(key_id)
            if rec is None:
                return frozenset()
            return rec.asset_classes

    # -- operator actions -----------------------------------------------------------------

    def issue(
        self,
        *,
        label: str = "",
        scopes: Iterable[str] = ("trade",),
        dialects: Iterable[str] = ("alpaca", "binance-futures"),
        asset_classes: Iterable[AssetClass | str] | None = None,
        expires_in_s: float | None = None,
        allowed_ips: list[str] | None = None,
    ) -> IssuedCredential:
        record = {
            "label": _check_label(label),
            "scopes": _check_scopes(scopes),
            "dialects": _check_dialects(dialects),
            "asset_classes": _check_asset_classes(asset_classes),
            "allowed_ips": _check_ips(allowed_ips),
        }
        expires_in_s = _check_seconds(expires_in_s, "expires_in_s", allow_zero=False)
        return self._add(record, expires_in_s, rotated_from=None)

    def _add(self, record: dict, expires_in_s: float | None, rotated_from: str | None, on_doc=None) -> IssuedCredential:
        with self._mutation() as doc:
            now = self.clock()
            key_id = _new_key_id()
            while key_id in doc["clients"]:
                key_id = _new_key_id()
            secret = _new_secret()
            if on_doc is not None:
                on_doc(doc, key_id, now)
            self.vault.put(f"client/{key_id}", secret.encode("ascii"))
            doc["clients"][key_id] = {
                **record,
                "key_id": key_id,
                "created_at": utc_iso(now),
                "expires_at": _iso_or_none(None if expires_in_s is None else now + expires_in_s),
                "revoked_at": None,
                "rotated_from": rotated_from,
                "rotated_to": None,
                "overlap_until": None,
                "secret_sha256": _sha256(secret).hex(),
            }
        return IssuedCredential(key_id, secret)

    def rotate(self, key_id: str, overlap_s: float = 3600) -> IssuedCredential:
        """A new credential with the same label, scopes, dialects, asset classes, allowlist and
        lifetime (counted from now). The old one keeps working for ``overlap_s`` seconds
        (0 = refused at once), then is refused."""
        overlap_s = _check_seconds(overlap_s, "overlap_s", allow_zero=True)
        with self._lock:
            self._refresh()
            old = self._records.get(key_id)
            if old is None:
                raise CredentialError(f"no credential {key_id!r}")
            raw = self._doc["clients"][key_id]
            lifetime = None if old.expires_at is None else max(old.expires_at - old.created_at, 1.0)
            record = {k: copy.deepcopy(raw[k]) for k in ("label", "scopes", "dialects", "asset_classes", "allowed_ips")}

            def retire_old(doc: dict, new_id: str, now: float) -> None:
                cur = doc["clients"].get(key_id)
                if cur is None:
                    raise CredentialError(f"no credential {key_id!r}")
                if cur["revoked_at"] is not None:
                    raise CredentialError(f"credential {key_id} is revoked; issue a new one instead")
                if cur["rotated_to"] is not None:
                    raise CredentialError(f"credential {key_id} was already rotated to {cur['rotated_to']}; rotate that one")
                cur["rotated_to"] = new_id
                cur["overlap_until"] = utc_iso(now + overlap_s)

            return self._add(record, lifetime, rotated_from=key_id, on_doc=retire_old)

    def revoke(self, key_id: str) -> None:
        """Refuse ``key_id`` from the next request on (in every process). Idempotent.

        The secret stays in the (encrypted) vault until ``prune``: a signed request can only be
        proven to come from a holder of the revoked key (a leak, see ``on_revoked_use``) while
        the secret is there to check the signature with."""
        with self._mutation() as doc:
            cur = doc["clients"].get(key_id)
            if cur is None:
                raise CredentialError(f"no credential {key_id!r}")
            if cur["revoked_at"] is None:
                cur["revoked_at"] = utc_iso(self.clock())

    def prune(self) -> int:
        """Remove from the vault the secrets of credentials that can never work again (revoked,
        expired, rotated past their overlap). Their records stay in clients.json for history."""
        with self._lock:
            self._refresh()
            now = self.clock()
            dead = [f"client/{k}" for k, rec in self._records.items() if rec.refusal(now) is not None]
        return self.vault.delete_many(dead) if dead else 0

    def _public(self, rec: _Client, now: float) -> dict:
        return {
            "key_id": rec.key_id,
            "label": rec.label,
            "status": rec.status(now),
            "scopes": sorted(rec.scopes),
            "dialects": sorted(rec.dialects),
            "asset_classes": None if rec.asset_classes is None else sorted(a.value for a in rec.asset_classes),
            "allowed_ips": None if rec.allowed_ips is None else [str(n) for n in rec.allowed_ips],
            "created_at": utc_iso(rec.created_at),
            "expires_at": _iso_or_none(rec.expires_at),
            "revoked_at": _iso_or_none(rec.revoked_at),
            "rotated_from": rec.rotated_from,
            "rotated_to": rec.rotated_to,
            "overlap_until": _iso_or_none(rec.overlap_until),
        }

    def list(self) -> list[dict]:
        """Every credential (oldest first) without secret or hash. Raises ClientStoreError when
        clients.json failed its integrity check."""
        with self._lock:
            self._refresh()
            if self._store_error is not None:
                raise ClientStoreError(self._store_error)
            now = self.clock()
            return sorted((self._public(r, now) for r in self._records.values()), key=lambda d: (d["created_at"], d["key_id"]))

    def describe(self, key_id: str) -> dict:
        with self._lock:
            self._refresh()
            rec = self._records.get(key_id)
            if rec is None:
                raise CredentialError(f"no credential {key_id!r}")
            return self._public(rec, self.clock())
