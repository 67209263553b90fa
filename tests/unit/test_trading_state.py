"""The persisted trading state: fail-closed reads and cross-process visibility."""


import orjson
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


def test_a_change_is_written_with_who_and_why_in_an_indented_file(tmp_path):
    path = tmp_path / "nested" / "home" / "state.json"  # parents are created
    previous, new = TradingControl(path).set(TradingState.LOCKED, "  drill  ", "ops")
    assert previous.state is TradingState.LOCKED and "missing" in previous.reason
    assert (new.state, new.reason, new.actor) == (TradingState.LOCKED, "drill", "ops")
    again = TradingControl(path).current
    assert (again.state, again.reason, again.actor, again.since) == (new.state, "drill", "ops", new.since)
    assert path.read_bytes() == orjson.dumps(new.to_json(), option=orjson.OPT_INDENT_2)
    assert new.to_json() == {"state": "LOCKED", "reason": "drill", "since": new.since.isoformat(), "actor": "ops"}


def test_a_new_home_records_why_it_is_active(tmp_path):
    record = TradingControl(tmp_path / "state.json").initialise()
    assert (record.state, record.reason, record.actor) == (TradingState.ACTIVE, "gateway home created", "init")


def test_a_state_file_without_an_actor_still_reads(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"state": "REDUCE_ONLY", "reason": "old file", "since": "2026-01-02T03:04:05+00:00"}')
    current = TradingControl(path).current
    assert (current.state, current.reason, current.actor) == (TradingState.REDUCE_ONLY, "old file", "")
    assert current.since.isoformat() == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize("content", ["{not json", '{"state": "PAUSED", "reason": "x", "since": "2026-01-01T00:00:00"}',
                                     '{"reason": "no state"}'])
def test_an_unreadable_state_file_reads_locked_and_says_so(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    current = TradingControl(path).current
    assert (current.state, current.reason, current.actor) == (TradingState.LOCKED, "state file state.json is unreadable", "gateway")


def test_a_missing_state_file_is_named(tmp_path):
    current = TradingControl(tmp_path / "state.json").current
    assert (current.state, current.reason, current.actor) == (TradingState.LOCKED, "state file state.json is missing", "gateway")


def test_reason_is_required_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match=r"^a reason is required$"):
        TradingControl(tmp_path / "state.json").set(TradingState.LOCKED, "", "cli")


def test_a_pinned_state_wins_over_the_file_until_restart(tmp_path):
    path = tmp_path / "state.json"
    control = TradingControl(path)
    control.initialise()
    pinned = control.pin(TradingState.LOCKED, "audit log unavailable")
    assert (pinned.state, pinned.reason, pinned.actor) == (TradingState.LOCKED, "audit log unavailable", "gateway")
    assert control.current is pinned
    # It is also persisted, so a restart (or the CLI) sees it too...
    on_disk = TradingControl(path).current
    assert (on_disk.state, on_disk.reason, on_disk.actor) == (TradingState.LOCKED, "audit log unavailable", "gateway")
    # ...and nothing written to the file unpins this process.
    TradingControl(path).set(TradingState.ACTIVE, "someone unlocks", "cli")
    assert control.state is TradingState.LOCKED and control.current is pinned
    assert TradingControl(path).state is TradingState.ACTIVE


def test_a_pin_holds_even_when_the_file_cannot_be_written(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    control = TradingControl(home / "state.json")
    control.initialise()
    (home / "state.json").unlink()
    (home / "state.lock").unlink()
    home.rmdir()
    home.write_text("a file where the state directory was")  # every write now fails
    pinned = control.pin(TradingState.LOCKED, "disk failed")
    assert control.state is TradingState.LOCKED and control.current is pinned


def test_a_state_path_that_is_a_directory_or_under_a_file_reads_as_locked(tmp_path):
    from gateway.control.state import TradingControl
    from gateway.model import TradingState

    directory = tmp_path / "state.json"
    directory.mkdir()
    record = TradingControl(directory).current
    assert record.state is TradingState.LOCKED and "IsADirectoryError" in record.reason
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    record = TradingControl(a_file / "state.json").current
    assert record.state is TradingState.LOCKED and "NotADirectoryError" in record.reason
