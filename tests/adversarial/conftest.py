"""The end-to-end fixtures (a gateway home, a running gateway on a real socket) shared with
tests/integration."""

from tests.integration.conftest import (  # noqa: F401 - pytest finds fixtures by name
    default_policy_home,
    gateway_home,
    paper_gateway,
    short_tmp,
)
