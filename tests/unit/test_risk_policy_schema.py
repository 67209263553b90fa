"""The policy schema for the rules: every field required (set or `off`), shapes validated,
and the JSON Schema `gatewayctl policy schema` prints."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

import pytest
import yaml

from gateway.policy.schema import (
    PolicyError,
    json_schema,
    json_schema_text,
    parse_policy,
    rail_meta,
)

from .test_rules_support import DEFAULT, default_doc


def parse(doc: dict) -> Any:
    return parse_policy(yaml.safe_dump(doc).encode()).policy


def refused(doc: dict) -> str:
    with pytest.raises(PolicyError) as raised:
        parse(doc)
    return str(raised.value)


def test_the_default_policy_parses_with_every_section():
    p = parse_policy(DEFAULT.read_bytes()).policy
    assert p.account.min_cash_buffer_pct.limit == 30 and p.account.max_open_positions.limit == 25
    assert p.account.symbol_allowlist is None and p.account.symbol_denylist == ()
    assert p.asset_classes.crypto.allocation_pct.limit == 15 and p.asset_classes.us_option.leverage.limit == 2
    assert p.asset_classes.us_equity.stop_loss.mode == "attach"  # an unprotected stock entry gets a stop
    assert p.asset_classes.crypto.stop_loss.mode == "attach"
    assert p.asset_classes.us_equity.stop_loss.max_distance_pct == 8
    assert [c.universe_size.limit for c in (p.asset_classes.crypto, p.asset_classes.us_option, p.asset_classes.us_equity)] == [9, 8, 20]
    assert p.asset_classes.us_option.no_buy_within_days.limit == 5 and p.asset_classes.us_option.long_only is True
    assert p.sectors == {}
    b = p.circuit_breakers
    assert (b.daily_loss_pct.limit, b.weekly_loss_pct.limit, b.monthly_loss_pct.limit, b.action) == (5, 10, 15, "reduce_only")


@pytest.mark.parametrize(
    "path, message",
    [
        (("account", "min_cash_buffer_pct"), "account.min_cash_buffer_pct: not set; set a limit or write `min_cash_buffer_pct: off`"),
        (("account", "orders_per_day"), "account.orders_per_day: not set; set a limit or write `orders_per_day: off`"),
        (("asset_classes", "crypto", "universe_size"), "asset_classes.crypto.universe_size: not set; set a limit or write `universe_size: off`"),
        (("asset_classes", "us_option", "no_buy_within_days"), "asset_classes.us_option.no_buy_within_days: not set"),
        (("circuit_breakers", "weekly_loss_pct"), "circuit_breakers.weekly_loss_pct: not set; set a limit or write `weekly_loss_pct: off`"),
        (("asset_classes", "crypto"), "asset_classes.crypto: not set; this field is required"),
        (("asset_classes", "us_equity", "stop_loss"), "asset_classes.us_equity.stop_loss: not set"),
        (("account", "symbol_denylist"), "account.symbol_denylist: not set"),
        (("sectors",), "sectors: not set"),
        (("circuit_breakers", "action"), "circuit_breakers.action: not set"),
    ],
)
def test_a_missing_field_is_an_error_naming_it(path, message):
    doc = default_doc()
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    assert message in refused(doc)


def test_unknown_fields_and_asset_classes_are_refused():
    doc = default_doc()
    doc["account"]["max_orders"] = 5
    doc["asset_classes"]["futures"] = doc["asset_classes"]["crypto"]
    doc["asset_classes"]["crypto"]["stop_loss"]["trail"] = 1
    message = refused(doc)
    for field in ("account.max_orders", "asset_classes.futures", "asset_classes.crypto.stop_loss.trail"):
        assert f"{field}: unknown field" in message


def test_off_everywhere_it_is_allowed():
    text = DEFAULT.read_text().replace('gateway_id: "*"', 'gateway_id: "gw"')
    for name in ("min_cash_buffer_pct", "max_open_positions", "orders_per_second", "universe_size", "daily_loss_pct",
                 "symbol_allowlist", "symbol_denylist", "no_buy_within_days"):
        text = re.sub(rf"^(\s+{name}:)[^#\n]*", r"\1 off ", text, flags=re.M)
    text = re.sub(r"stop_loss: \{mode: attach, max_distance_pct: 10\}", "stop_loss: off", text)
    text = re.sub(r"stop_loss: \{mode: attach, max_distance_pct: 8\}", "stop_loss: {mode: off}", text)
    text = text.replace("sectors: {}", "sectors: off")
    p = parse_policy(text.encode()).policy
    assert not p.account.min_cash_buffer_pct.enabled and not p.circuit_breakers.daily_loss_pct.enabled
    assert p.account.symbol_allowlist is None and p.account.symbol_denylist is None
    assert p.asset_classes.crypto.stop_loss.mode == "off" and p.asset_classes.us_equity.stop_loss.mode == "off"
    assert p.sectors == {}


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda d: d["account"].update(max_open_positions={"limit": 5, "on_violation": "clamp"}),
         "account.max_open_positions: on_violation clamp is not supported"),
        (lambda d: d["account"].update(max_open_positions="2.5"), "account.max_open_positions: must be a whole number"),
        (lambda d: d["account"].update(orders_per_second=-1), "the limit must be a finite, non-negative number"),
        (lambda d: d["asset_classes"]["crypto"].update(leverage=11), "asset_classes.crypto.leverage = 11 is above the gateway's hard ceiling of 10"),
        (lambda d: d["asset_classes"]["crypto"].update(stop_loss={"mode": "reject"}), "max_distance_pct is required unless mode is off"),
        (lambda d: d["asset_classes"]["crypto"].update(stop_loss={"mode": "attach", "max_distance_pct": 100}), "above 0 and below 100"),
        (lambda d: d["asset_classes"]["crypto"].update(stop_loss={"mode": "sometimes", "max_distance_pct": 5}), "asset_classes.crypto.stop_loss.mode"),
        (lambda d: d["account"].update(symbol_denylist="GME"), "write a list of symbols"),
        (lambda d: d["account"].update(symbol_allowlist=[""]), "every entry must be a non-empty symbol"),
        (lambda d: d.update(sectors={"AAPL": ""}), "sector of AAPL must be a non-empty name"),
        (lambda d: d["circuit_breakers"].update(action="flatten"), "circuit_breakers.action"),
        (lambda d: d["account"].update(duplicate_window_s=7200), "account.duplicate_window_s: at most 3600 seconds"),
        (lambda d: d["asset_classes"]["us_option"].update(long_only="maybe"), "asset_classes.us_option.long_only"),
    ],
)
def test_bad_values_are_refused_naming_the_field(edit, fragment):
    doc = default_doc()
    edit(doc)
    assert fragment in refused(doc)


def test_yaml_off_inside_a_stop_loss_mapping_means_off():
    doc = default_doc()
    text = yaml.safe_dump(doc).replace("mode: attach", "mode: off", 1)
    p = parse_policy(text.encode()).policy
    assert sum(c.stop_loss.mode == "off" for c in (p.asset_classes.crypto, p.asset_classes.us_option, p.asset_classes.us_equity)) == 1


def test_lists_and_sectors_are_normalised():
    doc = default_doc()
    doc["account"]["symbol_allowlist"] = [" aapl", "AAPL", "btc/usd"]
    doc["sectors"] = {"aapl": " Technology "}
    p = parse(doc)
    assert p.account.symbol_allowlist == ("AAPL", "BTC/USD") and p.sectors == {"AAPL": "technology"}


def test_rail_meta_covers_the_new_rails():
    assert rail_meta("account.min_cash_buffer_pct") == {"tighter": "higher", "clampable": True}
    assert rail_meta("account.orders_per_minute")["integer"] is True
    assert rail_meta("asset_classes.crypto.allocation_pct")["clampable"] is True
    assert rail_meta("asset_classes.us_option.no_buy_within_days")["tighter"] == "higher"
    assert rail_meta("circuit_breakers.daily_loss_pct")["tighter"] == "lower"
    with pytest.raises(KeyError):
        rail_meta("asset_classes.crypto.stop_loss")


def test_a_default_policy_round_trips_through_model_dump():
    p = parse_policy(DEFAULT.read_bytes()).policy
    assert type(p).model_validate(p.model_dump()) == p


# --- JSON Schema ---------------------------------------------------------------------------------

_KNOWN = {
    "$schema", "$id", "$defs", "$ref", "title", "description", "type", "properties", "required",
    "additionalProperties", "anyOf", "const", "enum", "items", "minimum", "minLength", "pattern",
    "format", "default", "exclusiveMinimum", "maxLength",
    # annotations of this gateway (unknown keywords are ignored by validators)
    "tighter", "clampable", "integer", "order",
}


def _check(schema: Any, value: Any, root: dict, where: str = "$") -> list[str]:
    """A small validator for the keywords the policy schema uses (enough to prove it accepts
    real policies and refuses wrong ones)."""
    if schema is True or schema == {}:
        return []
    errors: list[str] = []
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += _check(root["$defs"][name], value, root, where)
    if "anyOf" in schema:
        if all(_check(s, value, root, where) for s in schema["anyOf"]):
            errors.append(f"{where}: matches none of anyOf")
    if "const" in schema and not (value == schema["const"] and type(value) is type(schema["const"])):
        errors.append(f"{where}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: not one of {schema['enum']}")
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if kind is not None and not checks[kind](value):
        return errors + [f"{where}: not {kind}"]
    if isinstance(value, dict) and kind == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}.{name}: required")
        for name, item in value.items():
            if name in props:
                errors += _check(props[name], item, root, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{name}: not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _check(schema["additionalProperties"], item, root, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _check(schema["items"], item, root, f"{where}[{i}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{where}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: does not match {schema['pattern']}")
    return errors


def _keywords(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _keywords(sub, out)
            else:
                _keywords(value, out)
    elif isinstance(node, list):
        for item in node:
            _keywords(item, out)


def _as_json(document: Any) -> Any:
    """What an editor's JSON/YAML validator sees: dates as strings."""
    return json.loads(json.dumps(document, default=lambda v: v.isoformat() if isinstance(v, (date, datetime)) else str(v)))


def test_the_json_schema_is_json_and_uses_known_keywords_only():
    schema = json.loads(json_schema_text())
    assert schema == json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    seen: set[str] = set()
    _keywords(schema, seen)
    assert seen - _KNOWN == set(), seen - _KNOWN
    for section in ("account", "asset_classes", "sectors", "circuit_breakers"):
        assert section in schema["properties"] and section in schema["required"]
    assert {"AccountRules", "AssetClassRules", "ClassRules", "OptionRules", "StopLossRule", "CircuitBreakers", "Rail"} <= set(schema["$defs"])


def test_the_json_schema_accepts_the_default_policy_and_its_shorthands():
    schema = json_schema()
    doc = _as_json(yaml.safe_load(DEFAULT.read_bytes()))
    assert _check(schema, doc, schema) == []
    doc["account"]["max_order_qty"] = {"limit": 5, "on_violation": "clamp"}
    doc["account"]["symbol_allowlist"] = ["AAPL"]
    doc["asset_classes"]["crypto"]["stop_loss"] = False
    doc["sectors"] = {"AAPL": "tech"}
    assert _check(schema, doc, schema) == []


def test_the_json_schema_refuses_what_the_parser_refuses():
    schema = json_schema()
    for edit in (
        lambda d: d["account"].pop("max_open_positions"),
        lambda d: d["account"].update(bogus=1),
        lambda d: d["asset_classes"].pop("us_option"),
        lambda d: d["asset_classes"]["crypto"]["stop_loss"].update(mode="sometimes"),
        lambda d: d["circuit_breakers"].update(action="flatten"),
        lambda d: d["account"].update(max_order_qty=True),
        lambda d: d["account"].update(symbol_denylist="GME"),
    ):
        doc = _as_json(yaml.safe_load(DEFAULT.read_bytes()))
        edit(doc)
        assert _check(schema, doc, schema) != [], edit
