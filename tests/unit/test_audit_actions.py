"""Audit action codes: one enum, every code the service writes is a member, unknown codes are refused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from service.audit.actions import AuditAction
from service.audit.service import UnknownAuditAction, record_event

SERVICE = Path(__file__).resolve().parents[2] / "service"
WRITERS = {"record_event", "_audit_activation"}  # _audit_activation passes its `action` on to record_event


def action_arguments() -> list[tuple[str, ast.expr]]:
    """The `action=` argument of every call that writes an event, anywhere in service/."""
    found = []
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in WRITERS:
                found += [
                    (f"{path.relative_to(SERVICE)}:{node.lineno}", keyword.value)
                    for keyword in node.keywords
                    if keyword.arg == "action"
                ]
    return found


def test_every_code_the_service_writes_is_a_member_of_the_enum():
    arguments = action_arguments()
    assert len(arguments) > 40  # the scan did find the writers
    for where, value in arguments:
        if isinstance(value, ast.Name) and value.id == "action":
            continue  # a helper's parameter, itself checked at its call sites
        assert isinstance(value, ast.Attribute) and getattr(value.value, "id", None) == "AuditAction", where
        assert value.attr in AuditAction.__members__, where


def test_codes_keep_their_stored_shape():
    """Lower-case words, at most one dot (the calibration codes), within the 64-character column."""
    for action in AuditAction:
        assert re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)?", action.value) and len(action.value) <= 64, action
    assert AuditAction("calibration.created") is AuditAction.CALIBRATION_CREATED


@pytest.mark.parametrize("code", ["calibration.deleted", "Login", "", "review recorded"])
def test_record_event_refuses_a_code_outside_the_enum(code):
    with pytest.raises(UnknownAuditAction, match="not an AuditAction"):
        record_event(None, action=code)  # refused before the session is touched
