"""Polls a page makes by itself are not activity (issue 11, finding 11).

A page that polls (htmx `hx-trigger="every …"`) must send `X-Outpost-Background: 1`, which the
security layer reads to leave the session's idle timer alone (tests/auth/test_session_clock.py
shows the effect through the real server for the dashboard's polls). Otherwise an open tab
keeps an unattended session signed in forever: the backup job page polled every second without it.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from types import SimpleNamespace

from appliance.web.render import make_environment

TEMPLATES = resources.files("appliance.web").joinpath("templates")
TAG = re.compile(r"<[a-z][^>]*>", re.S)


def _templates():
    stack = [TEMPLATES]
    while stack:
        node = stack.pop()
        for child in node.iterdir():
            if child.is_dir():
                stack.append(child)
            elif child.name.endswith(".html"):
                yield child.name if node == TEMPLATES else f"{node.name}/{child.name}", child.read_text()


def _headers(tag: str) -> dict:
    found = re.search(r"hx-headers='([^']*)'", tag) or re.search(r'hx-headers="([^"]*)"', tag)
    return json.loads(html.unescape(found.group(1))) if found else {}


def _polls(text: str) -> list[str]:
    return [tag for tag in TAG.findall(text) if re.search(r'hx-trigger="[^"]*\bevery\b', tag)]


def test_every_polling_element_sends_the_background_header():
    polls = {name: _polls(text) for name, text in _templates()}
    assert sum(map(len, polls.values())) >= 3, polls  # dashboard health, fleet, backup job status
    unmarked = [f"{name}: {tag[:120]}" for name, tags in polls.items() for tag in tags
                if _headers(tag).get("X-Outpost-Background") != "1"]
    assert not unmarked, "polls that count as user activity:\n" + "\n".join(unmarked)


def test_the_running_backup_job_polls_as_background():
    job = SimpleNamespace(id="j1", state="running", file="", size=0, error="")
    page = make_environment().get_template("backups/_status.html").render(
        job=job, fresh=False, errors={}, message="", csrf_token="t", principal=None)
    (poll,) = _polls(page)
    assert 'hx-get="/settings/backups/jobs/j1/status"' in poll
    assert _headers(poll) == {"X-Outpost-Background": "1"}
