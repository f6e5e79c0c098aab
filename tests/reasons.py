"""Every failure reason code the worker can emit, collected from the code that raises it.

Reasons are literals at the raise sites (``PermanentError("...", reason="not_a_video")``), so
new ones appear by writing them there. This module reads the sources of the worker's packages
with :mod:`ast` and sorts what it finds into the kinds the README lists:

- ``dead_letter``: a :class:`~dupwatch.errors.PermanentError` reason: the upload is
  dead-lettered at once with it;
- ``input_transient``: a :class:`~dupwatch.errors.TransientError` reason about one upload
  (retried, then dead-lettered as ``retries_exhausted``);
- ``dependency``: a transient reason of a shared dependency (``ingest.retry.DEPENDENCY_REASONS``:
  the worker waits, never dead-letters);
- ``webhook``: the dead-letter reasons of alerts a webhook receiver did not take.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from dupwatch.paths import REPO_ROOT

PACKAGES = ("dupwatch", "ingest", "detect", "index")
"""The worker's packages (``inference``'s download errors belong to ``dupwatch models fetch``)."""


@dataclass(frozen=True)
class ReasonSite:
    code: str
    kind: str
    where: str  # path:line of one raise site


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (reasons kept in constants)."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _literals(node: ast.expr, constants: dict[str, str]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    if isinstance(node, ast.IfExp):
        return _literals(node.body, constants) + _literals(node.orelse, constants)
    return []  # computed at run time (e.g. ``reason=error.reason``): passed on, not a new code


def _error_class(call: ast.Call) -> str | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name if name in ("PermanentError", "TransientError") else None


def scan(root: Path = REPO_ROOT, packages: tuple[str, ...] = PACKAGES) -> list[ReasonSite]:
    """Every ``PermanentError``/``TransientError`` reason literal in ``packages``, with one site each."""
    from ingest.retry import DEPENDENCY_REASONS

    sites: dict[str, ReasonSite] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            constants = _constants(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or (cls := _error_class(node)) is None:
                    continue
                for keyword in node.keywords:
                    if keyword.arg != "reason":
                        continue
                    for code in _literals(keyword.value, constants):
                        if cls == "PermanentError":
                            kind = "dead_letter"
                        elif code in DEPENDENCY_REASONS:
                            kind = "dependency"
                        elif code == "retries_exhausted":
                            kind = "dead_letter"
                        else:
                            kind = "input_transient"
                        sites.setdefault(code, ReasonSite(code, kind, f"{path.relative_to(root)}:{node.lineno}"))
    return sorted(sites.values(), key=lambda s: s.code)


def webhook_reasons() -> list[ReasonSite]:
    """Dead-letter reasons of alerts a receiver did not take (``detect.webhooks.dlq_reason``'s range)."""
    from detect import webhooks

    codes = set(webhooks.DLQ_REASONS.values()) | {webhooks.dlq_reason("http_400")}
    return [ReasonSite(code, "webhook", "detect/webhooks.py (dlq_reason)") for code in sorted(codes)]


def all_reasons() -> list[ReasonSite]:
    return scan() + webhook_reasons()
