"""Shared fixtures. `fake_teacher`: a fake OpenAI-compatible server (tests/fakeserver.py) for any test
that needs a teacher; script it per test, aim a TeacherConfig at it with `fake_teacher.config()`, or a
CLI subprocess with `fake_teacher.env()`."""

from __future__ import annotations

import pytest

from tests.fakeserver import FakeServer


@pytest.fixture
def fake_teacher():
    with FakeServer() as server:
        yield server
