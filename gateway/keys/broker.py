"""Upstream broker API keys, kept encrypted in the vault.

One vault name per venue, ``broker/{venue}``; each version holds the key id and the secret
together as one encrypted JSON value, so a reader can never see a new key id with an old
secret: ``set``/``rotate`` is a single atomic vault write. Older versions stay in the vault for
audit and ``rollback``. Nothing here returns the secret except ``get``, which is what the venue
calls to sign its requests.
"""

from __future__ import annotations

import json

from .vault import SecretNotFound, Vault, VaultError, utc_iso

VENUES = ("alpaca", "ccxt")


class BrokerKeyError(Exception):
    """A broker key cannot be stored or used. Messages never contain the secret."""


class BrokerKeyMissing(BrokerKeyError, LookupError):
    pass


def mask(key_id: str) -> str:
    """``****`` plus the last 4 characters (all masked when the id is 8 characters or fewer)."""
    return "****" + key_id[-4:] if len(key_id) > 8 else "****"


def _name(venue: str) -> str:
    if venue not in VENUES:
        raise BrokerKeyError(f"unknown venue {venue!r}; broker keys exist for {', '.join(VENUES)}")
    return f"broker/{venue}"


def _check(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BrokerKeyError(f"the {what} must be a non-empty string")
    if value != value.strip():
        # Most often a newline read along with the value from standard input.
        raise BrokerKeyError(f"the {what} has leading or trailing whitespace; strip it first")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BrokerKeyError(f"the {what} contains control characters")
    return value


class BrokerKeys:
    def __init__(self, vault: Vault):
        self.vault = vault

    def __repr__(self) -> str:
        return f"BrokerKeys({self.vault!r})"

    def _store(self, venue: str, key_id: str, secret: str, action: str, **extra) -> int:
        name = _name(venue)
        payload = {
            "key_id": _check(key_id, "key id"),
            "secret": _check(secret, "secret"),
            "set_at": utc_iso(),
            "action": action,
            **extra,
        }
        return self.vault.put(name, json.dumps(payload).encode())

    def _load(self, venue: str, version: int | None = None) -> tuple[int, dict]:
        name = _name(venue)
        try:
            if version is None:
                version = self.vault.latest_version(name)
                if version is None:
                    raise SecretNotFound(name)
            raw = self.vault.get_version(name, version)
        except SecretNotFound:
            raise BrokerKeyMissing(
                f"no broker key is set for {venue}"
                + (f" (version {version})" if version is not None else "")
                + f"; run: gatewayctl broker-keys set --home HOME --venue {venue} --key-id ID"
            ) from None
        try:
            payload = json.loads(raw)
            if not isinstance(payload.get("key_id"), str) or not isinstance(payload.get("secret"), str):
                raise ValueError
        except ValueError:
            raise VaultError(f"broker key entry for {venue} is malformed") from None
        return version, payload

    def set(self, venue: str, key_id: str, secret: str) -> int:
        """Store the venue's key (a new version; earlier ones are kept). Returns the version."""
        return self._store(venue, key_id, secret, "set")

    def rotate(self, venue: str, key_id: str, secret: str) -> int:
        """Swap to a new key; requires one to be set already. The previous version stays in the
        vault (see ``history``, ``rollback``); ``get`` returns the new key from the moment the
        single atomic write lands. Returns the new version."""
        previous = self.vault.latest_version(_name(venue))
        if previous is None:
            raise BrokerKeyMissing(f"no broker key is set for {venue}; use set, not rotate")
        return self._store(venue, key_id, secret, "rotate", previous_version=previous)

    def rollback(self, venue: str) -> int:
        """Make the version before the current one current again (as a new version)."""
        current, _ = self._load(venue)
        versions = [v["version"] for v in self.vault.versions(_name(venue)) if v["version"] < current]
        if not versions:
            raise BrokerKeyMissing(f"{venue} has no earlier broker key version to roll back to")
        _, old = self._load(venue, versions[-1])
        return self._store(venue, old["key_id"], old["secret"], "rollback", previous_version=current)

    def get(self, venue: str) -> tuple[str, str]:
        """``(key_id, secret)`` of the current key. Raises BrokerKeyMissing."""
        _, payload = self._load(venue)
        return payload["key_id"], payload["secret"]

    def is_set(self, venue: str) -> bool:
        return self.vault.latest_version(_name(venue)) is not None

    @staticmethod
    def _describe(venue: str, version: int, payload: dict) -> dict:
        return {
            "venue": venue,
            "configured": True,
            "key_id": mask(payload["key_id"]),
            "version": version,
            "set_at": payload.get("set_at"),
            "action": payload.get("action", "set"),
        }

    def describe(self, venue: str) -> dict:
        """Masked key id, version, set_at, earlier versions kept; never the secret.
        ``{"venue": v, "configured": False}`` when no key is set."""
        try:
            version, payload = self._load(venue)
        except BrokerKeyMissing:
            return {"venue": venue, "configured": False}
        out = self._describe(venue, version, payload)
        out["previous_versions"] = [v["version"] for v in self.vault.versions(_name(venue)) if v["version"] < version]
        return out

    def history(self, venue: str) -> list[dict]:
        """Every stored version, masked, oldest first."""
        return [self._describe(venue, v["version"], self._load(venue, v["version"])[1]) for v in self.vault.versions(_name(venue))]
