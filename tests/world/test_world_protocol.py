"""The wire protocol is its own module: clients load it without the server, and the server
without its clients (what tests/test_layering.py checks on the source, checked here on what a
fresh interpreter really imports)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import world.protocol as protocol
import world.service as service
from world.protocol import ServiceError, parse_request

ROOT = Path(__file__).resolve().parents[2]
SERVER_LIBS = ("fastapi", "uvicorn", "starlette")


def _loaded_after(module: str) -> set[str]:
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("client", ["world.remote", "world.service_client",
                                    "world.service_viewer"])
def test_clients_load_the_protocol_not_the_server(client):
    loaded = _loaded_after(client)
    assert "world.protocol" in loaded
    assert "world.service" not in loaded
    assert not {m for m in loaded if m.split(".")[0] in SERVER_LIBS}


def test_the_server_loads_no_client():
    loaded = _loaded_after("world.service")
    assert {"world.protocol", "world.service_viewer", "uvicorn"} <= loaded
    assert not {"world.service_client", "world.remote"} & loaded


def test_the_service_still_offers_the_moved_names():
    moved = [n for n in service.__all__ if hasattr(protocol, n)]
    assert {"HEADER", "WS_PATH", "ServiceError", "decode_frame", "parse_open"} <= set(moved)
    for name in moved:
        assert getattr(service, name) is getattr(protocol, name)


@pytest.mark.parametrize(("text", "match"), [
    (None, "Binary messages are not requests"),
    ("{not json", "not valid JSON"),
    ('["open"]', 'JSON object with a "type"'),
    ('{"type": 3}', 'JSON object with a "type"'),
])
def test_bad_requests_get_one_sentence(text, match):
    with pytest.raises(ServiceError, match=match):
        parse_request(text)
    assert parse_request('{"type": "stats"}') == {"type": "stats"}
