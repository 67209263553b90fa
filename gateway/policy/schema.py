"""The risk policy: a frozen, fully explicit document.

Every rail must be either set or consciously turned off (``off``): a missing rail is an
error naming it, so a typo or an old file can never silently disable a limit. The hard
ceilings below are part of the gateway; a policy may tighten them and never loosen them.

A rail is written as a bare number, as ``off``, or as a mapping::

    max_position_pct: 2
    max_order_qty: off
    max_order_notional: {limit: 50000, on_violation: clamp}

Each rail declares which direction is tighter (``tighter: lower`` for maxima, ``higher`` for
minima), so a policy change can be classified field by field as tightening or loosening.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .strict_yaml import StrictYamlError, load_strict

# Hard ceilings: no signed policy can go above these (the product's promise).
HARD_CEILINGS: dict[str, Decimal] = {
    "max_leverage": Decimal("10"),
    "max_position_pct": Decimal("2"),
    "max_exposure_pct": Decimal("20"),
}

OnViolation = Literal["reject", "clamp"]


class PolicyError(ValueError):
    """A policy that cannot take effect. The message names the field and the reason."""


class Rail(BaseModel):
    """One limit. ``enabled=False`` is the explicit ``off``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: Decimal | None = None
    on_violation: OnViolation = "reject"
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False; accept the string too.
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return {"enabled": False}
        if isinstance(value, bool):
            raise ValueError("write a number or `off`, not true")
        if isinstance(value, (int, float, str, Decimal)):
            return {"limit": value}
        return value

    @field_validator("limit", mode="before")
    @classmethod
    def _exact_number(cls, value: Any) -> Any:
        # YAML floats go through repr so 0.1 stays 0.1.
        if isinstance(value, float):
            return Decimal(repr(value))
        return value

    @model_validator(mode="after")
    def _finite_non_negative(self) -> "Rail":
        if self.enabled:
            if self.limit is None:
                raise ValueError("a rail that is on needs a limit")
            if not self.limit.is_finite() or self.limit < 0:
                raise ValueError("the limit must be a finite, non-negative number")
        return self

    @property
    def active(self) -> bool:
        return self.enabled and self.limit is not None


def _rail(
    description: str,
    *,
    tighter: Literal["lower", "higher"],
    clampable: bool = False,
    integer: bool = False,
) -> Any:
    extra: dict[str, Any] = {"tighter": tighter, "clampable": clampable}
    if integer:
        extra["integer"] = True
    return Field(..., description=description, json_schema_extra=extra)


def _is_off(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


def _decimal(value: Any) -> Any:
    return Decimal(repr(value)) if isinstance(value, float) else value


# --- lists and maps that can be `off` ---------------------------------------------------------


def _symbol_list(value: Any) -> Any:
    """A list of symbols, or ``off`` (stored as None). Symbols are upper-cased, deduplicated."""
    if value is None or _is_off(value):
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError("write a list of symbols, e.g. [AAPL, BTC/USD], or `off`")
    seen: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError("every entry must be a non-empty symbol")
        seen[item.strip().upper()] = None
    return tuple(seen)


def _sector_map(value: Any) -> Any:
    """``{SYMBOL: sector}``, or ``off`` / empty for none (every symbol is then ``unknown``)."""
    if value is None or _is_off(value):
        return {}
    if not isinstance(value, dict):
        raise ValueError("write a mapping of SYMBOL: sector, or `off`")
    out: dict[str, str] = {}
    for symbol, sector in value.items():
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError("every key must be a non-empty symbol")
        if not isinstance(sector, str) or not sector.strip():
            raise ValueError(f"sector of {symbol} must be a non-empty name")
        out[symbol.strip().upper()] = sector.strip().lower()
    return out


_OFF_SCHEMA: list[dict[str, Any]] = [{"const": False}, {"const": "off"}]

SymbolList = Annotated[
    tuple[str, ...] | None,
    BeforeValidator(_symbol_list),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string", "minLength": 1}}, {"type": "null"}, *_OFF_SCHEMA]}),
]
SectorMap = Annotated[
    dict[str, str],
    BeforeValidator(_sector_map),
    WithJsonSchema(
        {"anyOf": [{"type": "object", "additionalProperties": {"type": "string", "minLength": 1}}, {"type": "null"}, *_OFF_SCHEMA]}
    ),
]

# Sector of every symbol the policy's ``sectors`` map does not name (still capped).
UNKNOWN_SECTOR = "unknown"


# --- account ----------------------------------------------------------------------------------


class AccountRules(BaseModel):
    """Account-level rails. All percentages are of current account equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_leverage: Rail = _rail(
        "Projected gross notional over equity, and the ceiling on any leverage setting (x).",
        tighter="lower",
    )
    max_position_pct: Rail = _rail(
        "Projected capital committed to one symbol, % of equity (open orders included).",
        tighter="lower",
        clampable=True,
    )
    max_exposure_pct: Rail = _rail(
        "Projected capital committed across all symbols, % of equity (open orders included).",
        tighter="lower",
        clampable=True,
    )
    min_cash_buffer_pct: Rail = _rail(
        "Cash left after every pending buy and this buy, % of equity; a buy may not take it lower.",
        tighter="higher",
        clampable=True,
    )
    max_open_positions: Rail = _rail(
        "Symbols with a position or a pending order, this order's symbol included.",
        tighter="lower",
        integer=True,
    )
    max_risk_per_trade_pct: Rail = _rail(
        "qty x |entry - protective stop| x multiplier, % of equity; with no protective stop the "
        "whole notional counts as at risk.",
        tighter="lower",
        clampable=True,
    )
    max_order_notional: Rail = _rail(
        "Notional of one order (qty x price x multiplier), in account currency (fat finger).",
        tighter="lower",
        clampable=True,
    )
    max_order_qty: Rail = _rail("Quantity of one order, in units or contracts (fat finger).", tighter="lower", clampable=True)
    price_collar_pct: Rail = _rail(
        "A limit or stop price further than this % from the reference price is refused.",
        tighter="lower",
    )
    duplicate_window_s: Rail = _rail(
        "The same credential sending the same symbol, side, quantity and prices again within "
        "this many seconds is refused (exits too).",
        tighter="higher",
    )
    min_signal_confidence: Rail = _rail(
        "When set, every entry must carry a signal confidence of at least this value.",
        tighter="higher",
    )
    max_sector_pct: Rail = _rail(
        "Projected capital committed to one sector (see `sectors`), % of equity; unmapped "
        "symbols share the sector `unknown`.",
        tighter="lower",
        clampable=True,
    )
    symbol_allowlist: SymbolList = Field(
        ...,
        description="Only these symbols (an option also matches its underlying) may be entered; `off` for any.",
        json_schema_extra={"tighter": "subset"},
    )
    symbol_denylist: SymbolList = Field(
        ...,
        description="These symbols (and options on them) may not be entered; `off` or [] for none.",
        json_schema_extra={"tighter": "superset"},
    )
    # Rate limits per bot credential (Caller.key_id), rolling windows; exits count and are not exempt.
    orders_per_second: Rail = _rail("New orders (submits and closes) accepted in any rolling second, per credential.", tighter="lower", integer=True)
    orders_per_minute: Rail = _rail("New orders accepted in any rolling minute, per credential.", tighter="lower", integer=True)
    orders_per_day: Rail = _rail("New orders accepted in any rolling 24 hours (minute resolution), per credential.", tighter="lower", integer=True)
    replaces_per_second: Rail = _rail("Order replaces (modifications) accepted in any rolling second, per credential.", tighter="lower", integer=True)
    replaces_per_minute: Rail = _rail("Order replaces accepted in any rolling minute, per credential.", tighter="lower", integer=True)
    replaces_per_day: Rail = _rail("Order replaces accepted in any rolling 24 hours (minute resolution), per credential.", tighter="lower", integer=True)


# --- asset classes ----------------------------------------------------------------------------


class StopLossRule(BaseModel):
    """Mandatory protective stop on entries: ``reject`` refuses an entry without one, ``attach``
    adds one at ``max_distance_pct`` from the entry price, ``off`` checks nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["reject", "attach", "off"] = Field(
        ...,
        description="reject | attach | off",
        # Least to most strict, for a future ordered classification in policy diffs.
        json_schema_extra={"tighter": "order", "order": ["off", "attach", "reject"]},
    )
    max_distance_pct: Decimal | None = Field(
        None,
        description="Largest distance of the protective stop from the entry price, %.",
        json_schema_extra={"tighter": "lower"},
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if _is_off(value):
            return {"mode": "off"}
        if isinstance(value, dict) and value.get("mode") is False:  # YAML reads `mode: off` as False
            return {**value, "mode": "off"}
        return value

    @field_validator("max_distance_pct", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        return _decimal(value)

    @model_validator(mode="after")
    def _distance(self) -> "StopLossRule":
        if self.mode != "off":
            d = self.max_distance_pct
            if d is None:
                raise ValueError("max_distance_pct is required unless mode is off")
            if not d.is_finite() or d <= 0 or d >= 100:
                raise ValueError("max_distance_pct must be above 0 and below 100")
        return self

    @property
    def active(self) -> bool:
        return self.mode != "off"


class ClassRules(BaseModel):
    """Rails for one asset class. Percentages are of account equity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allocation_pct: Rail = _rail(
        "Projected capital committed to this asset class, % of equity.", tighter="lower", clampable=True
    )
    leverage: Rail = _rail(
        "Leverage cap of the class (x): the symbol's leverage setting, and the class's projected "
        "gross notional over equity, must both stay at or below it.",
        tighter="lower",
        clampable=True,
    )
    stop_loss: StopLossRule = Field(..., description="Mandatory protective stop on entries.")
    universe_size: Rail = _rail(
        "Distinct symbols of this class with a position or pending order, this one included.",
        tighter="lower",
        integer=True,
    )


class OptionRules(ClassRules):
    """Options add: no purchase close to expiry, and long calls and puts only."""

    no_buy_within_days: Rail = _rail(
        "A buy is refused when the contract expires within this many days (counted from now, UTC).",
        tighter="higher",
    )
    long_only: bool = Field(
        ...,
        description="true: an option sell that does not reduce a long is refused (no naked or short options).",
        json_schema_extra={"tighter": "order", "order": [False, True]},
    )


class AssetClassRules(BaseModel):
    """One section per asset class; all three are required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crypto: ClassRules
    us_option: OptionRules
    us_equity: ClassRules


# --- circuit breakers -------------------------------------------------------------------------


class CircuitBreakers(BaseModel):
    """Loss from each period's starting equity (UTC day, ISO week, calendar month)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_loss_pct: Rail = _rail("Loss since the day's starting equity (the venue's last_equity), %.", tighter="lower")
    weekly_loss_pct: Rail = _rail("Loss since the ISO week's starting equity, %.", tighter="lower")
    monthly_loss_pct: Rail = _rail("Loss since the month's starting equity, %.", tighter="lower")
    action: Literal["reduce_only", "locked"] = Field(
        ...,
        description="The trading state a tripped breaker moves the gateway to.",
        json_schema_extra={"tighter": "order", "order": ["reduce_only", "locked"]},
    )


class Policy(BaseModel):
    """The whole signed document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(..., ge=1, description="Monotonic; a policy must be newer than the active one.")
    gateway_id: str = Field(..., min_length=1, description="The gateway this policy is meant for.")
    expires: datetime = Field(..., description="After this instant the policy no longer takes effect.")
    description: str = ""
    account: AccountRules
    asset_classes: AssetClassRules
    sectors: SectorMap = Field(
        ..., description="SYMBOL: sector, for max_sector_pct; an option uses its underlying's entry."
    )
    circuit_breakers: CircuitBreakers

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expires needs a time zone, e.g. 2027-01-01T00:00:00Z")
        return value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _hard_ceilings(self) -> "Policy":
        for name, ceiling in HARD_CEILINGS.items():
            rail: Rail = getattr(self.account, name)
            if not rail.enabled:
                raise ValueError(f"account.{name} is a hard rail and cannot be turned off")
            if rail.limit is not None and rail.limit > ceiling:
                raise ValueError(
                    f"account.{name} = {rail.limit} is above the gateway's hard ceiling of {ceiling}"
                )
        ceiling = HARD_CEILINGS["max_leverage"]
        for cls_name in AssetClassRules.model_fields:
            rail = getattr(self.asset_classes, cls_name).leverage
            if rail.active and rail.limit > ceiling:
                raise ValueError(
                    f"asset_classes.{cls_name}.leverage = {rail.limit} is above the gateway's hard ceiling of {ceiling}"
                )
        return self

    @model_validator(mode="after")
    def _rail_shapes(self) -> "Policy":
        for name, rail in _walk_rails(self, ""):
            meta = rail_meta(name, type(self))
            if rail.enabled and rail.on_violation == "clamp" and not meta.get("clampable"):
                raise ValueError(f"{name}: on_violation clamp is not supported by this rail; use reject")
            if rail.active and meta.get("integer") and rail.limit != rail.limit.to_integral_value():
                raise ValueError(f"{name}: must be a whole number, not {rail.limit}")
        window = self.account.duplicate_window_s
        if window.active and window.limit > MAX_DUPLICATE_WINDOW_S:
            raise ValueError(f"account.duplicate_window_s: at most {MAX_DUPLICATE_WINDOW_S} seconds")
        return self

    def rails(self) -> dict[str, Rail]:
        """Every rail by dotted name, e.g. ``account.max_position_pct``, however deeply nested.
        Walks the model on every call: hot paths (the risk engine) compile it once per policy."""
        return dict(_walk_rails(self, ""))


# The duplicate detector keeps fingerprints this long at most.
MAX_DUPLICATE_WINDOW_S = Decimal(3600)


def _walk_rails(model: BaseModel, prefix: str):
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Rail):
            yield prefix + name, value
        elif isinstance(value, BaseModel):
            yield from _walk_rails(value, f"{prefix}{name}.")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from _walk_rails(item, f"{prefix}{name}.{key}.")


def rail_meta(dotted: str, root: type[BaseModel] | None = None) -> dict[str, Any]:
    """Schema metadata (``tighter``, ``clampable``, ``integer``) of a rail by dotted name,
    in ``Policy`` or in ``root`` (a subclass)."""
    model: Any = root or Policy
    parts = iter(dotted.split("."))
    for part in parts:
        field = model.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        if annotation is Rail:
            extra = field.json_schema_extra
            return dict(extra) if isinstance(extra, dict) else {}
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif getattr(annotation, "__origin__", None) is dict:
            next(parts, None)  # the mapping key, e.g. an asset class name
            model = annotation.__args__[1]
        else:
            break
    raise KeyError(dotted)


class LoadedPolicy(BaseModel):
    """A parsed policy together with the exact bytes it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    policy: Policy
    sha256: str

    @property
    def version(self) -> int:
        return self.policy.version


def parse_policy(data: bytes) -> LoadedPolicy:
    """Parse and validate policy YAML. Raises PolicyError naming every bad or missing field."""
    try:
        document = load_strict(data)
    except StrictYamlError as exc:
        raise PolicyError(f"policy is ambiguous YAML: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError("policy must be a YAML mapping")
    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(_explain(exc)) from None
    return LoadedPolicy(policy=policy, sha256=hashlib.sha256(data).hexdigest())


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            leaf = where.rsplit(".", 1)[-1]
            if _is_rail_path(where):
                lines.append(f"{where}: not set; set a limit or write `{leaf}: off` to turn it off")
            else:
                lines.append(f"{where}: not set; this field is required")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if where else message)
    return "invalid policy: " + "; ".join(lines)


def _is_rail_path(dotted: str) -> bool:
    try:
        rail_meta(dotted)
    except KeyError:
        return False
    return True


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The policy's JSON Schema (draft 2020-12), for editors validating YAML and for
    ``gatewayctl policy schema``. Shorthands are part of it: a rail is a number, ``off``
    (YAML reads it as false) or a mapping; ``stop_loss`` may be ``off``."""
    schema = Policy.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.get("$defs", {})
    rail = defs.get("Rail")
    if rail is not None:
        defs["Rail"] = {
            "title": "Rail",
            "description": "A limit: a non-negative number, `off`, or {limit, on_violation, enabled}.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$"},
                *_OFF_SCHEMA,
                rail,
            ],
        }
    stop = defs.get("StopLossRule")
    if stop is not None:
        defs["StopLossRule"] = {"title": "StopLossRule", "description": stop.get("description", ""), "anyOf": [*_OFF_SCHEMA, stop]}
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": "https://risk-gateway.invalid/policy.schema.json", **schema}


def json_schema_text() -> str:
    """``json_schema()`` as indented JSON text (what ``gatewayctl policy schema`` prints)."""
    import json

    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
