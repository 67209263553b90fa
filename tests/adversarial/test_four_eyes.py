"""Finding 4: one key holder cannot loosen the policy alone. `init` creates two signers for two
people; one signature applies a policy that only tightens (so `policy sign --key SIGNER_KEY` then
`apply` keeps working for tightening), loosening needs both, and so does trusting a new signer:
a key of one's own cannot be added to then co-sign a loosening."""

from __future__ import annotations

from pathlib import Path

import orjson

from .cli import run


def edited(active: Path, target: Path, version: int, position_pct: str) -> Path:
    lines = []
    for line in active.read_text().splitlines(keepends=True):
        if line.startswith("version:"):
            line = f"version: {version}\n"
        elif line.lstrip().startswith("max_position_pct:"):
            line = line[: len(line) - len(line.lstrip())] + f"max_position_pct: {position_pct}\n"
        lines.append(line)
    target.write_text("".join(lines))
    return target


def version(home: str) -> int:
    return orjson.loads(run("status", "--home", home, "--json").stdout)["policy"]["version"]


def test_init_json_names_both_signers(short_tmp):
    out = orjson.loads(run("init", str(short_tmp / "fresh"), "--json").stdout)
    assert Path(out["signer_key"]).is_file() and Path(out["second_signer_key"]).is_file()
    assert out["signer_key"] != out["second_signer_key"]
    trust = orjson.loads((short_tmp / "fresh" / "trust.json").read_bytes())
    assert set(trust["keys"]) == {out["signer_key_id"], out["second_signer_key_id"]}
    assert (trust["threshold"], trust["loosen_threshold"]) == (1, 2)


def test_one_key_holder_cannot_add_a_key_of_their_own_and_loosen(gateway_home, short_tmp):
    home, signer = str(gateway_home.home), str(gateway_home.signer_key)
    active = Path(gateway_home.policy)

    # One signature applies a tightening (what an outside check does with init's signer_key).
    tighter = edited(active, short_tmp / "v2.yaml", 2, "1.5")
    run("policy", "sign", str(tighter), "--key", signer)
    run("policy", "apply", str(tighter), "--home", home)
    assert version(home) == 2

    mine = short_tmp / "mine.key"
    run("policy", "keygen", "--out", str(mine))
    added = run("trust", "add-key", "--home", home, "--public-key", str(mine.with_suffix(".pub")), "--key", signer, check=False)
    assert added.returncode != 0 and "loosening quorum" in added.stderr
    assert len(orjson.loads(Path(home, "trust.json").read_bytes())["keys"]) == 2

    looser = edited(active, short_tmp / "v3.yaml", 3, "2")
    run("policy", "sign", str(looser), "--key", signer)
    run("policy", "sign", str(looser), "--key", str(mine))
    refused = run("policy", "apply", str(looser), "--home", home, check=False)
    assert refused.returncode != 0 and "needs_second_signer" in refused.stderr
    assert version(home) == 2

    run("policy", "sign", str(looser), "--key", str(gateway_home.second_signer_key))  # the second person
    run("policy", "apply", str(looser), "--home", home)
    assert version(home) == 3
