"""Finding 10: a policy whose YAML says two things (a duplicated key, last one wins; a merge key
pulling values from elsewhere) is refused by `policy verify`, `sign` and `apply`: a signer must
be vouching for exactly what the gateway will enforce."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from .cli import run


def _bump(text: str, version: int) -> str:
    return "".join(f"version: {version}\n" if line.startswith("version:") else line for line in text.splitlines(keepends=True))


def _duplicate_key(active: str) -> str:
    # The reader sees 1.5 first; PyYAML would keep the later, looser 2.
    return active.replace("  max_position_pct:", "  max_position_pct: 1.5\n  max_position_pct:", 1)


def _merge_key(active: str) -> str:
    return active + "\nlimits_template: &loose {max_position_pct: 2}\n" + "extra:\n  <<: *loose\n"


@pytest.mark.parametrize("mangle, words", [(_duplicate_key, "duplicate key 'max_position_pct'"), (_merge_key, "merge keys")])
def test_ambiguous_policy_yaml_is_refused_by_sign_verify_and_apply(gateway_home, short_tmp, mangle, words):
    home = str(gateway_home.home)
    active = Path(gateway_home.policy).read_text()
    assert "  max_position_pct:" in active
    draft = short_tmp / "v2.yaml"
    draft.write_text(mangle(_bump(active, 2)))

    signed = run("policy", "sign", str(draft), "--key", str(gateway_home.signer_key), check=False)
    assert signed.returncode != 0 and words in signed.stderr
    assert not draft.with_name("v2.yaml.sig").exists()

    # Signed anyway (the bytes signed by a tool that does not check): verify and apply still refuse.
    from gateway.policy.signing import load_private_key, sign_bytes, dump_sig_doc

    doc = sign_bytes(draft.read_bytes(), load_private_key(gateway_home.signer_key), None, kind="policy")
    draft.with_name("v2.yaml.sig").write_bytes(dump_sig_doc(doc))
    verified = run("policy", "verify", str(draft), "--home", home, check=False)
    assert verified.returncode != 0 and words in verified.stderr
    applied = run("policy", "apply", str(draft), "--home", home, check=False)
    assert applied.returncode != 0 and words in applied.stderr
    status = orjson.loads(run("status", "--home", home, "--json").stdout)
    assert status["policy"]["version"] == 1
