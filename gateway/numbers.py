"""Untrusted numbers into Decimal, or a clear InvalidRequest.

Every quantity and price a bot sends passes through here. JSON floats arrive as Python floats;
they are converted through ``repr`` so 0.1 stays 0.1 rather than its binary expansion.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .errors import InvalidRequest

# Bounds on anything a bot may send. Far above any real order, far below values that break
# arithmetic or hide overflow (1e308). Named so tests and error messages can cite them.
MAX_QTY = Decimal("1000000000")  # 1e9 units
MAX_PRICE = Decimal("1000000000")  # 1e9 per unit
MAX_NOTIONAL = Decimal("100000000000")  # 1e11 in account currency
MAX_PERCENT = Decimal("100")
MAX_DECIMAL_PLACES = 12


def parse_decimal(
    value: object,
    name: str,
    *,
    maximum: Decimal,
    allow_zero: bool = False,
) -> Decimal:
    """Parse a positive decimal from JSON/form input.

    Refuses booleans, NaN, infinities, negatives, zero (unless allowed), values above
    ``maximum`` and more than MAX_DECIMAL_PLACES decimal places.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidRequest(f"{name} must be a number")
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (int, str, Decimal)):
        text = str(value).strip()
    else:
        raise InvalidRequest(f"{name} must be a number")
    if len(text) > 64:
        raise InvalidRequest(f"{name} is too long to be a number")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(f"{name} is not a number") from None
    if not number.is_finite():
        raise InvalidRequest(f"{name} must be finite")
    if number < 0:
        raise InvalidRequest(f"{name} must not be negative")
    if number == 0 and not allow_zero:
        raise InvalidRequest(f"{name} must be greater than zero")
    if number > maximum:
        raise InvalidRequest(f"{name} exceeds the maximum of {maximum}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise InvalidRequest(f"{name} has more than {MAX_DECIMAL_PLACES} decimal places")
    return number


def parse_optional(value: object, name: str, *, maximum: Decimal, allow_zero: bool = False) -> Decimal | None:
    if value is None:
        return None
    return parse_decimal(value, name, maximum=maximum, allow_zero=allow_zero)


def fmt(value: Decimal | None) -> str | None:
    """Decimal to a plain string for wire formats (no exponent, no trailing zeros)."""
    if value is None:
        return None
    return format(value.normalize(), "f")
