"""The browser viewer (``GET /viewer``): served, self-contained, speaking the service protocol.

Three levels, from always to where a browser is installed: the page is valid, self-contained
HTML whose script uses only the service's messages and frame layout, driven here from a Python
WebSocket client exactly as the script would (with the token in the query); the script's key
logic run in Node.js; and the page itself in headless Chromium (Debian's ``chromium`` or
``chromium-headless-shell``), driven over the DevTools protocol with real key presses, through a
service restart. The browser test is skipped where no Chromium is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from control.actions import IDLE, parse_action
from world.service import FORMATS, HEADER, OPEN_FIELDS, WS_PATH, ServiceConfig, WorldService
from world.service_client import WorldClient
from world.service_viewer import HEADER_OFFSETS

TOKEN = "vi3wer-token"
REQUEST_TYPES = {"open", "action", "stats", "close"}
VOID = {"meta", "input", "br", "img", "hr", "link", "source", "wbr", "area", "base", "col",
        "embed", "track"}


@pytest.fixture(scope="module")
def service():
    svc = WorldService(ServiceConfig(port=0, token=TOKEN, engines=("sandbox",), max_side=128,
                                     open_timeout=5.0)).start()
    yield svc
    svc.stop()


def _get(svc: WorldService, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.port}{path}", timeout=5) as r:
        return r.status, r.headers.get("content-type", ""), r.read().decode("utf-8")


class _Checker(HTMLParser):
    """Collects tags, checks that every element is closed in order, and keeps the scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)


def _page(svc: WorldService) -> tuple[_Checker, str]:
    status, kind, html = _get(svc, "/viewer")
    assert status == 200 and kind.startswith("text/html")
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker, "".join(checker.scripts)


def test_viewer_is_one_valid_self_contained_page(service):
    page, script = _page(service)
    assert page.doctype and not page.problems and not page.stack, page.problems
    assert [t for t, _ in page.tags].count("script") == 1
    assert all("src" not in a and "href" not in a for _, a in page.tags)  # nothing to fetch
    assert not re.search(r"https?://|@import|url\(", _get(service, "/viewer")[2])
    ids = {a["id"] for _, a in page.tags if "id" in a}
    assert {"view", "token", "open", "info"} <= ids
    assert set(re.findall(r'\$\("(\w+)"\)', script)) <= ids  # every element it uses exists
    assert _get(service, "/")[2] == _get(service, "/viewer")[2]  # the root serves it too


def _js_value(script: str, name: str):
    return json.loads(re.search(rf"const {name} = (.+?);\n", script).group(1))


def test_viewer_script_speaks_exactly_the_service_protocol(service):
    _, script = _page(service)
    # Frame layout: the offsets it reads are the service's.
    assert _js_value(script, "WS_PATH") == WS_PATH
    assert _js_value(script, "HEADER_BYTES") == HEADER.size
    offsets = _js_value(script, "AT")
    assert offsets == HEADER_OFFSETS and _js_value(script, "FORMATS") == FORMATS
    assert 'binaryType = "arraybuffer"' in script
    assert '"?token=" + encodeURIComponent(token)' in script  # a browser cannot send headers
    # Requests: every message it sends, and every field of its open request.
    types = set(re.findall(r'\{type: "(\w+)"', script))
    assert types == {"open", "action", "close"} and types <= REQUEST_TYPES
    literal = re.search(r'\{type: "open",(.+?)\};', script, re.S).group(1)
    open_fields = set(re.findall(r"(\w+):", literal)) | set(re.findall(r"message\.(\w+) =",
                                                                       script))
    assert open_fields == {"engine", "height", "width", "format", "image", "seed"}
    assert open_fields <= OPEN_FIELDS
    # Replies it reads.
    assert set(re.findall(r'reply\.type === "(\w+)"', script)) == {"opened", "error"}

    # The same messages from a Python client, authenticated the way the page is (query).
    url = f"ws://127.0.0.1:{service.port}{WS_PATH}?token={TOKEN}"
    with connect(url, max_size=None, proxy=None) as ws:
        ws.send(json.dumps({"type": "open", "engine": "sandbox", "height": 40, "width": 40,
                            "format": "raw", "seed": 3}))
        opened = json.loads(ws.recv(timeout=10))
        assert opened["type"] == "opened" and opened["session"] >= 1
        frame = ws.recv(timeout=10)
        assert isinstance(frame, bytes)
        # Read the frame the way the script's draw() does.
        h, w = struct.unpack_from("<HH", frame, offsets["height"])
        assert (h, w) == (40, 40) and frame[offsets["format"]] == FORMATS["raw"]
        assert struct.unpack_from("<I", frame, offsets["chunk"])[0] == 0
        assert frame[offsets["action"]] == IDLE.index
        assert len(frame) - HEADER.size == h * w * 3
        for action in ("W+A LEFT", "D DOWN+RIGHT", "S"):
            ws.send(json.dumps({"type": "action", "action": action}))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                got = ws.recv(timeout=5)
                if isinstance(got, bytes) and got[offsets["action"]] == \
                        parse_action(action).index:
                    break
            else:
                pytest.fail(f"no frame with the page's action {action!r}")
        ws.send(json.dumps({"type": "close"}))
    with pytest.raises(Exception, match="401"):  # and without the token: refused
        connect(f"ws://127.0.0.1:{service.port}{WS_PATH}", proxy=None, open_timeout=5)


_KEY_CASES = [  # keys held, oldest first -> the action the page must send
    (["W"], "W"),
    (["W", "S"], "S"),  # opposite keys: the newest wins
    (["S", "W"], "W"),
    (["W", "A", "LEFT"], "W+A LEFT"),
    (["A", "D", "UP", "DOWN", "RIGHT"], "D DOWN+RIGHT"),
    (["LEFT", "UP"], "UP+LEFT"),
    ([], "\u00b7"),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_viewer_key_logic_run_in_node(service):
    _, script = _page(service)
    parts = [re.search(rf"const {n} = .+?;\n", script).group(0) for n in ("IDLE", "AXES")]
    func = re.search(r"function actionFor\(keys\) \{.+?\n\}\n", script, re.S).group(0)
    program = "".join(parts) + func + (
        f"console.log(JSON.stringify({json.dumps([k for k, _ in _KEY_CASES])}"
        ".map(actionFor)));")
    out = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    assert sent == [want for _, want in _KEY_CASES]
    for text in sent:  # each is an action the service understands
        parse_action(text)
    assert str(parse_action(sent[3])) == "W+A ←"


# ---------------------------------------------------------------------------- Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class _DevTools:
    """A minimal DevTools-protocol client of one page (JSON over the page's WebSocket)."""

    def __init__(self, url: str) -> None:
        self.ws = connect(url, max_size=None, proxy=None, open_timeout=10, legacy=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=20))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def key(self, kind: str, code: str, key: str, vk: int) -> None:
        self.call("Input.dispatchKeyEvent", type=kind, code=code, key=key,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.skipif(_chromium() is None,
                    reason="no Chromium: install Debian's chromium or chromium-headless-shell")
def test_viewer_in_headless_chromium():
    svc = WorldService(ServiceConfig(port=0, token=TOKEN, engines=("sandbox",), max_side=128,
                                     open_timeout=5.0)).start()  # its own: it is restarted
    with WorldClient(svc.url, token=TOKEN) as c:  # what the page must show first
        c.open(seed=3, height=48, width=48)
        expected = c.frame().image
    profile = tempfile.mkdtemp(prefix="yume-chromium-")
    browser = subprocess.Popen(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = Path(profile, "DevToolsActivePort")
        assert _until(lambda: active.exists() and active.read_text().strip(), 20)
        port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        tab = _DevTools(page["webSocketDebuggerUrl"])
        tab.call("Emulation.setFocusEmulationEnabled", enabled=True)
        tab.call("Page.enable")
        tab.call("Page.navigate", url=f"http://127.0.0.1:{svc.port}/viewer?autostart=1"
                                      f"&seed=3&size=48&token={TOKEN}")
        assert _until(lambda: (tab.eval("window.yumeViewer && yumeViewer.frames") or 0) > 0,
                      20), tab.eval("document.getElementById('info').textContent")
        # The canvas shows the world's first frame, pixel for pixel.
        rgba = tab.eval("Array.from(document.getElementById('view').getContext('2d')"
                        ".getImageData(0, 0, 48, 48).data)")
        shown = np.array(rgba, dtype=np.uint8).reshape(48, 48, 4)
        np.testing.assert_array_equal(shown[..., :3], expected)

        def session_action() -> str | None:
            stats = svc.status()["session_stats"]
            return stats[0]["action"] if stats else None

        # Real key presses: W, then the left arrow with it; the newest of W/S wins.
        tab.key("rawKeyDown", "KeyW", "w", 87)
        tab.key("rawKeyDown", "ArrowLeft", "ArrowLeft", 37)
        assert _until(lambda: session_action() == "W ←", 5), session_action()
        walk_left = parse_action("W ←").index
        assert _until(lambda: tab.eval("yumeViewer.header.action") == walk_left, 5)
        tab.key("rawKeyDown", "KeyS", "s", 83)
        assert _until(lambda: session_action() == "S ←", 5), session_action()
        for code, key, vk in (("KeyW", "w", 87), ("KeyS", "s", 83),
                              ("ArrowLeft", "ArrowLeft", 37)):
            tab.key("keyUp", code, key, vk)
        assert _until(lambda: session_action() == "·", 5), session_action()

        # The service restarts: the page reconnects by itself and frames flow again.
        port_before, seen = svc.port, tab.eval("yumeViewer.frames")
        svc.stop()
        assert _until(lambda: tab.eval("yumeViewer.state").startswith("reconnecting"), 10)
        svc = WorldService(ServiceConfig(port=port_before, token=TOKEN, engines=("sandbox",),
                                         max_side=128)).start()
        assert _until(lambda: tab.eval("yumeViewer.opens") == 2, 20), tab.eval(
            "yumeViewer.state")
        assert _until(lambda: tab.eval("yumeViewer.frames") > seen, 10)
        tab.key("rawKeyDown", "KeyD", "d", 68)
        assert _until(lambda: session_action() == "D", 5), session_action()
        tab.ws.close()
    finally:
        browser.kill()
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
        svc.stop()
