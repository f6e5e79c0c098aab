"""README.md says what the code does: its reason list is the code's (other README blocks: tests/test_demo.py)."""

from __future__ import annotations

import re

from tests.reasons import ReasonSite, all_reasons
from tests.readme_blocks import UPDATE, read_block, write_block

KINDS = {
    "dead_letter": "dead-lettered at once (the upload itself is bad), or after its retries",
    "input_transient": "retried up to limits.max_attempts times (one upload's source failing), then dead-lettered as retries_exhausted",
    "dependency": "waited out, never dead-lettered (a shared dependency is down)",
    "webhook": "dead letters of alerts a webhook receiver did not take",
}
REGENERATE = "DUPWATCH_UPDATE_README=1 python -m pytest tests/test_readme.py"


def reasons_block(sites: list[ReasonSite]) -> str:
    lines = []
    for kind, label in KINDS.items():
        codes = sorted(s.code for s in sites if s.kind == kind)
        lines.append(f"- {label}: " + ", ".join(f"`{c}`" for c in codes))
    return "\n".join(lines) + "\n"


def _listed(block: str) -> dict[str, set[str]]:
    listed: dict[str, set[str]] = {}
    for line in block.splitlines():
        for kind, label in KINDS.items():
            if line.startswith(f"- {label}:"):
                listed[kind] = set(re.findall(r"`([a-z][a-z0-9_]*)`", line.split(":", 1)[1]))
    return listed


def reason_problems(block: str, sites: list[ReasonSite]) -> list[str]:
    """What to add to or remove from the README block, per code."""
    listed = _listed(block)
    problems = []
    for kind in KINDS:
        have = listed.get(kind, set())
        want = {s.code: s for s in sites if s.kind == kind}
        for code in sorted(set(want) - have):
            problems.append(f"add `{code}` to the README's '{KINDS[kind]}' line (raised at {want[code].where})")
        for code in sorted(have - set(want)):
            problems.append(f"remove `{code}` from the README's '{KINDS[kind]}' line (no {kind} reason of that name in the code)")
    return problems


def test_every_reason_code_of_the_code_is_in_the_readme_and_no_other() -> None:
    sites = all_reasons()
    expected = reasons_block(sites)
    if UPDATE:
        write_block("reasons", expected)
    problems = reason_problems(read_block("reasons"), sites)
    assert not problems, "README.md reason list differs from the code:\n  " + "\n  ".join(problems) + \
        f"\nEdit the <!-- reasons --> block or regenerate it: {REGENERATE}"
    assert read_block("reasons") == expected, f"README reason block is not in the generated form; run {REGENERATE}"


def test_the_scan_finds_the_codes_the_readme_used_to_miss() -> None:
    found = {s.code: s.kind for s in all_reasons()}
    for code in ("url_invalid", "host_not_found", "source_http_invalid", "source_http_unexpected",
                 "source_tls_invalid", "too_many_redirects", "not_a_video", "retries_exhausted"):
        assert found[code] == "dead_letter"
    assert found["source_http_5xx"] == "input_transient" and found["milvus_unavailable"] == "dependency"
    assert found["webhook_rejected"] == "webhook"


def test_a_drifted_list_names_exactly_what_to_change() -> None:
    sites = all_reasons()
    block = reasons_block(sites).replace("`url_invalid`, ", "").replace("`zero_frames`", "`zero_frames`, `made_up_reason`")
    assert reason_problems(block, sites) == [
        f"add `url_invalid` to the README's '{KINDS['dead_letter']}' line (raised at "
        f"{next(s.where for s in sites if s.code == 'url_invalid')})",
        f"remove `made_up_reason` from the README's '{KINDS['dead_letter']}' line (no dead_letter reason of that name in the code)",
    ]
