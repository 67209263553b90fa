"""The dashboard's policy history: each applied version with its diff against the one before,
classified tighten / loosen by gateway.policy.diff."""

import yaml

from gateway.admin.dashboard.policy_history import history
from gateway.bootstrap import init_home
from gateway.home import Home


def test_history_lists_versions_newest_first_with_classified_diffs(tmp_path):
    init = init_home(tmp_path / "home")
    home = Home.at(init.home)
    v1 = yaml.safe_load((home.policy_history / "v1.yaml").read_text())
    v2 = dict(v1, version=2, account=dict(v1["account"], max_position_pct=1))
    v3 = dict(v2, version=3, account=dict(v2["account"], max_position_pct=1.5))
    (home.policy_history / "v2.yaml").write_text(yaml.safe_dump(v2))
    (home.policy_history / "v3.yaml").write_text(yaml.safe_dump(v3))
    (home.policy_history / "v4.yaml").write_text("version: [not a policy")

    got = history(home)
    assert [h["version"] for h in got] == [4, 3, 2, 1]
    assert "error" in got[0]
    assert got[3]["changes"] is None  # the first version has nothing to compare with
    assert [(c["name"], c["old"], c["new"], c["direction"]) for c in got[2]["changes"]] == [
        ("account.max_position_pct", "2", "1", "tighten")
    ]
    assert [(c["name"], c["direction"]) for c in got[1]["changes"]] == [("account.max_position_pct", "loosen")]
    assert len(got[1]["sha256"]) == 64
    assert [h["version"] for h in history(home, limit=2)] == [4, 3]
