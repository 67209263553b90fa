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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def _rail(description: str, *, tighter: Literal["lower", "higher"], clampable: bool = False) -> Any:
    return Field(..., description=description, json_schema_extra={"tighter": tighter, "clampable": clampable})


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


class Policy(BaseModel):
    """The whole signed document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(..., ge=1, description="Monotonic; a policy must be newer than the active one.")
    gateway_id: str = Field(..., min_length=1, description="The gateway this policy is meant for.")
    expires: datetime = Field(..., description="After this instant the policy no longer takes effect.")
    description: str = ""
    account: AccountRules

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
        return self

    def rails(self) -> dict[str, Rail]:
        """Every rail by dotted name, e.g. ``account.max_position_pct``, however deeply nested."""
        return dict(_walk_rails(self, ""))


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


def rail_meta(dotted: str) -> dict[str, Any]:
    """Schema metadata (``tighter``, ``clampable``) of a rail by dotted name."""
    model: Any = Policy
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
        document = yaml.safe_load(data)
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
            lines.append(f"{where}: not set; set a limit or write `{where.rsplit('.', 1)[-1]}: off` to turn it off")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field")
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if where else message)
    return "invalid policy: " + "; ".join(lines)


def json_schema() -> dict[str, Any]:
    """The policy's JSON Schema, for editors validating YAML."""
    return Policy.model_json_schema()
