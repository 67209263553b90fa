"""The master key: 32 random bytes that wrap every other key the gateway holds.

Where it comes from, in order:

1. the environment variable ``GATEWAY_MASTER_KEY`` (standard base64 of the 32 bytes), when set
   and non-empty; for deployments that keep the key in a secret manager instead of on disk;
2. the owner-only file ``Home.master_key`` (the same base64 text, one line).

The file is refused when group or others have any permission bit on it: a master key that other
users could read protects nothing. The key is never printed, logged, or put in an exception
message; errors name the source and the fix only.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Mapping

from ..home import Home, write_private

ENV_VAR = "GATEWAY_MASTER_KEY"
KEY_BYTES = 32


class VaultError(Exception):
    """The key store or the master key cannot be used. Messages never contain key material."""


class MasterKeyError(VaultError):
    """The master key is missing, malformed, or stored with unsafe permissions."""


def new_master_key() -> bytes:
    """32 fresh random bytes from the OS CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def encode_master_key(key: bytes) -> str:
    """The text form used both in the file and in ``GATEWAY_MASTER_KEY``."""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes")
    return base64.b64encode(key).decode("ascii")


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(
            f"{source} is not valid base64; it must hold the base64 encoding of {KEY_BYTES} random bytes"
        ) from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"{source} decodes to {len(key)} bytes; a master key is exactly {KEY_BYTES} bytes (base64)"
        )
    return key


def create_master_key(home: Home) -> bytes:
    """Generate a master key and write it to ``home.master_key`` (0600, atomic).

    Refuses to overwrite an existing file: losing the old key would make the key store
    unreadable forever. Returns the key so the caller can create the vault with it.
    """
    path = home.master_key
    if path.exists():
        raise MasterKeyError(f"{path} already exists; refusing to overwrite a master key")
    key = new_master_key()
    write_private(path, (encode_master_key(key) + "\n").encode("ascii"))
    return key


def master_key_source(home: Home, environ: Mapping[str, str] | None = None) -> str:
    """Where ``load_master_key`` would read from (for status output; no key material)."""
    env = os.environ if environ is None else environ
    return f"environment variable {ENV_VAR}" if env.get(ENV_VAR) else str(home.master_key)


def load_master_key(home: Home, environ: Mapping[str, str] | None = None) -> bytes:
    """The master key from ``GATEWAY_MASTER_KEY`` if set, else from the owner-only key file."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR)
    if value:
        return _decode(value, f"environment variable {ENV_VAR}")

    path = home.master_key
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise MasterKeyError(
            f"no master key: {path} does not exist and {ENV_VAR} is not set "
            f"(create a home with `gatewayctl init`, or set {ENV_VAR})"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"cannot open master key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"{path} is not a regular file")
        mode = st.st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyError(
                f"{path} has mode {mode:o}: group/others may access the master key; "
                f"it must be owner-only (run: chmod 600 {path})"
            )
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise MasterKeyError(
                f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()}); "
                f"run the gateway as the owner of its home, or chown the file"
            )
        data = b""
        while chunk := os.read(fd, 4096):
            data += chunk
            if len(data) > 4096:
                raise MasterKeyError(f"{path} is too large to be a master key file")
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MasterKeyError(f"{path} is not a base64 text file") from None
    return _decode(text, str(path))
