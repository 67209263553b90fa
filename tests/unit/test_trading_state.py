"""The persisted trading state: fail-closed reads and cross-process visibility."""


import pytest

from gateway.control.state import TradingControl
from gateway.model import TradingState


def test_new_home_starts_active(tmp_path):
    control = TradingControl(tmp_path / "state.json")
    control.initialise()
    assert control.state is TradingState.ACTIVE


def test_missing_state_file_reads_locked(tmp_path):
    current = TradingControl(tmp_path / "state.json").current
    assert current.state is TradingState.LOCKED and "missing" in current.reason


def test_corrupt_state_file_reads_locked(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert TradingControl(path).state is TradingState.LOCKED


def test_change_by_another_process_is_seen_on_next_read(tmp_path):
    path = tmp_path / "state.json"
    gateway = TradingControl(path)
    gateway.initialise()
    assert gateway.state is TradingState.ACTIVE
    cli = TradingControl(path)  # what `gatewayctl lockdown` does while the gateway runs
    previous, new = cli.set(TradingState.LOCKED, "operator says stop", "cli")
    assert previous.state is TradingState.ACTIVE and new.state is TradingState.LOCKED
    assert gateway.state is TradingState.LOCKED
    assert gateway.current.reason == "operator says stop"


def test_state_survives_a_new_instance(tmp_path):
    path = tmp_path / "state.json"
    TradingControl(path).set(TradingState.REDUCE_ONLY, "daily loss", "breaker")
    assert TradingControl(path).state is TradingState.REDUCE_ONLY


def test_reason_is_required(tmp_path):
    with pytest.raises(ValueError):
        TradingControl(tmp_path / "state.json").set(TradingState.LOCKED, "  ", "cli")
