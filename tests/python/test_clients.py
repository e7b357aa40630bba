"""The demo server (examples/demo.rs) read by Python's httpx + httpx-sse.

Run by scripts/test.sh as `pytest -q tests/python` (DEMO_BIN set, see conftest.py).
"""

import json

import httpx
import pytest
from httpx_sse import connect_sse

TIMEOUT = httpx.Timeout(10.0)


def read_all(url, path, headers=None):
    """Every event of a finite SSE response, as httpx-sse parses them."""
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", path, headers=dict(headers or {})) as source:
            assert source.response.status_code == 200
            return list(source.iter_sse())


def test_events_in_order(demo_url):
    events = read_all(demo_url, "/events?count=5")
    assert [(e.id, e.event, e.data) for e in events] == [
        (str(i), "tick", f'{{"n":{i}}}') for i in range(1, 6)
    ]
    assert [json.loads(e.data) for e in events] == [{"n": i} for i in range(1, 6)]


def test_events_default_count_is_5(demo_url):
    events = read_all(demo_url, "/events")
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]


def test_multiline_reassembled_exactly(demo_url):
    events = read_all(demo_url, "/multiline")
    assert [(e.event, e.data) for e in events] == [
        ("message", "line one\nline two\nline three"),
        ("message", "a\nb\nc"),
    ]


def test_retry_field(demo_url):
    events = read_all(demo_url, "/retry")
    assert [(e.data, e.retry) for e in events] == [("ok", 1500)]


def test_resume_from_last_event_id(demo_url):
    assert [e.id for e in read_all(demo_url, "/resume")] == [str(i) for i in range(1, 11)]
    events = read_all(demo_url, "/resume", headers={"Last-Event-ID": "7"})
    assert [(e.id, e.data) for e in events] == [("8", "8"), ("9", "9"), ("10", "10")]
    assert read_all(demo_url, "/resume", headers={"Last-Event-ID": "10"}) == []


@pytest.mark.parametrize(
    "path",
    ["/events?count=5", "/multiline", "/resume", "/retry", "/heartbeat?ms=200", "/idle", "/fanout"],
)
def test_sse_headers(demo_url, path):
    with httpx.Client(base_url=demo_url, timeout=TIMEOUT) as client:
        # Endless streams too: only the head is read, then the connection is dropped.
        with connect_sse(client, "GET", path) as source:
            r = source.response
            assert r.status_code == 200
            assert r.http_version == "HTTP/1.1"
            ctype = r.headers.get("content-type", "")
            assert ctype.split(";")[0].strip() == "text/event-stream", ctype
            assert r.headers.get("cache-control") == "no-cache, no-transform"
            assert r.headers.get("x-accel-buffering") == "no"
            assert "content-length" not in r.headers


def test_heartbeat_is_a_comment_not_an_event(demo_url):
    # httpx-sse drops comment lines: a heartbeat must never surface as an event.
    # Read raw lines for a short while to see the heartbeat comments arrive.
    with httpx.Client(base_url=demo_url, timeout=TIMEOUT) as client:
        with client.stream("GET", "/heartbeat?ms=50") as r:
            comments = []
            for line in r.iter_lines():
                assert line == "" or line.startswith(":"), repr(line)
                if line.startswith(":"):
                    comments.append(line)
                if len(comments) >= 3:
                    break
    assert len(comments) == 3
