"""The window's status bar shows the link of a remote world (a real window, offscreen)."""

from __future__ import annotations

import time

from control.actions import parse_action
from world.remote import RemoteWorld
from world.server import WorldServer
from world.service import ServiceConfig, WorldService


def test_status_bar_shows_the_link_state(qapp):
    from gui.main_window import MainWindow

    svc = WorldService(ServiceConfig(port=0, engines=("sandbox",), max_side=64)).start()
    engine = RemoteWorld(f"remote://127.0.0.1:{svc.port}", height=32, width=32, timeout=2.0,
                         backoff=(0.05, 0.1), give_up_s=0.5)
    engine.reset(seed=2)
    window = MainWindow(WorldServer(engine))
    try:
        window._update_status()
        assert window.status["fps"].text().endswith(", link connected")
        engine.step(parse_action("W"))
        svc.stop()
        deadline = time.monotonic() + 10
        while not engine.link_state.startswith("lost") and time.monotonic() < deadline:
            time.sleep(0.05)
        window._update_status()
        text = window.status["fps"].text()
        assert ", link lost: " in text and "no answer for 0.5 s" in text
    finally:
        window.shutdown()
        window.close()
        engine.close()
        svc.stop()
