"""``HOME/gateway.json``, typed: the gateway's identity and the options of its safeguards.

The model is built from what the parts declare: the core keys below, and each safeguard's
``OPTIONS`` (``gateway.guards``). Unknown keys are refused at start with a message naming the
key (and the nearest known one), so a typo never silently leaves a safeguard off. Add an option by
declaring it on the guard that reads it; nothing else parses this file but ``PolicyStore``,
which reads ``gateway_id`` only.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .guards import SAFEGUARDS


class ConfigError(ValueError):
    """gateway.json is missing, not JSON, or has a bad or unknown key; the message says which."""


class CoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    gateway_id: str = Field(min_length=1, description="this gateway's id; signed policies name it")
    created_at: str | None = Field(None, description="when `gatewayctl init` made the home")
    live_trading_acknowledgement: str | None = Field(
        None, description="the exact sentence that allows a live upstream (written by the operator, never by a command)"
    )
    lockdown_on_revoked_key_use: bool = Field(
        False, description="lock down when a request proves it holds a revoked credential (a leaked key)"
    )
    lockdown_suspend_at_broker: bool = Field(
        False,
        description="Alpaca venue: every lockdown also sets the account's own suspend_trade (as "
        "`gatewayctl lockdown --suspend-at-broker` does); `unlock` clears it",
    )


@lru_cache(maxsize=1)
def config_model() -> type[BaseModel]:
    """CoreConfig plus every safeguard's declared options."""
    fields: dict[str, Any] = {}
    for part in SAFEGUARDS:
        for option in part.OPTIONS:
            if option.name in CoreConfig.model_fields or option.name in fields:
                raise RuntimeError(f"gateway.json option {option.name!r} is declared twice")
            fields[option.name] = (option.type, Field(option.default, description=option.help))
    return create_model("GatewayConfig", __base__=CoreConfig, **fields)


def known_keys() -> list[str]:
    return sorted(config_model().model_fields)


def parse_config(data: bytes, *, source: str = "gateway.json") -> Any:
    """The validated config (a frozen GatewayConfig). Raises ConfigError."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{source} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{source} must be a JSON object")
    try:
        return config_model().model_validate(document)
    except ValidationError as exc:
        errors = [{**err, "loc": _plain_loc(err["loc"])} for err in exc.errors()]
        # A union field (an object or "off") fails on every branch; report the object's errors.
        fields_with_detail = {err["loc"][:1] for err in errors if err["type"] != "literal_error"}
        errors = [e for e in errors if e["type"] != "literal_error" or e["loc"][:1] not in fields_with_detail]
        raise ConfigError(f"{source}: " + "; ".join(dict.fromkeys(_explain(err) for err in errors))) from None


def load_config(path: Path) -> Any:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no {Path(path).name} in {Path(path).parent}") from None
    return parse_config(data, source=str(path))


_UNION_TAG = re.compile(r"^([A-Z]\w*|literal\[.*|nullable\[.*|function-.*|constrained-.*|float|int|str|bool)$")


def _plain_loc(loc: tuple) -> tuple:
    """The key path without pydantic's union-branch tags (``RejectionBurstOptions``, ``literal['off']``)."""
    return tuple(part for i, part in enumerate(loc) if i == 0 or not _UNION_TAG.match(str(part)))


def _explain(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        known = known_keys() if len(err["loc"]) == 1 else []
        near = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key {where!r}{hint}"
    if err["type"] == "missing":
        return f"{where}: required"
    return f"{where}: {err['msg']}"
