"""The browser viewer of the world service: one HTML page, inline script, no external assets.

``GET /viewer`` (and ``GET /``) serves it. The page opens the service's WebSocket, sends the
keys held down as actions (W/A/S/D walk, arrow keys turn and tilt; of two opposite keys the one
pressed last wins) and draws the frames; for a caregiver's screen or a demo. Query parameters
fill its fields: ``token`` (needed when the service requires one; it is sent as ``?token=`` on
the WebSocket, since a browser cannot set an ``Authorization`` header there), ``engine``,
``seed``, ``size``, ``format`` (``raw`` or ``png``) and ``autostart=1`` (open at once). When the
connection drops, the page reconnects with a growing delay and reopens the world from the last
frame it showed, as the window's remote world does.

The frame header's offsets are written into the page from :data:`world.protocol.HEADER`, so the
page and the service cannot disagree about them. ``window.yumeViewer`` exposes the page's
counters (frames, last header, state) for tests and for a look in the browser console.
"""

from __future__ import annotations

import json
import struct

from world.protocol import FORMATS, HEADER, WS_PATH

# Byte offsets of the header fields the page reads (see HEADER's layout in world.protocol).
HEADER_OFFSETS = {
    "format": struct.calcsize("<4sB"),
    "height": struct.calcsize("<4sBB"),
    "width": struct.calcsize("<4sBBH"),
    "chunk": struct.calcsize("<4sBBHH"),
    "index": struct.calcsize("<4sBBHHI"),
    "action": struct.calcsize("<4sBBHHIIH"),
    "dropped": HEADER.size - 4,
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Yume world</title>
<style>
body { font-family: sans-serif; background: #1e1e1e; color: #ddd; margin: 1em; }
canvas { image-rendering: pixelated; width: min(90vw, 70vh); aspect-ratio: 1; background: #000;
         display: block; outline: none; }
input, select, button { font-size: 1em; }
#info { font-family: monospace; }
</style>
</head>
<body>
<h1>Yume world</h1>
<p>
<label>engine <select id="engine"><option>sandbox</option><option>mvdt</option></select></label>
<label>seed <input id="seed" value="0" size="5"></label>
<label>size <input id="size" value="256" size="5"></label>
<label>token <input id="token" type="password" size="14" autocomplete="off"></label>
<button id="open">open</button> <button id="close">close</button>
</p>
<canvas id="view" width="256" height="256" tabindex="0"></canvas>
<p>W/A/S/D walk, arrow keys turn and tilt. Action <b id="action">&middot;</b>;
<span id="info" role="status">not connected</span></p>
<script>
"use strict";
const WS_PATH = @WS_PATH@;
const HEADER_BYTES = @HEADER_BYTES@;
const AT = @OFFSETS@;
const FORMATS = @FORMATS@;
const IDLE = "\\u00b7";
// Key code -> action key; pairs of opposite keys share an axis (the newest pressed wins).
const KEYS = {KeyW: "W", KeyS: "S", KeyA: "A", KeyD: "D", ArrowUp: "UP", ArrowDown: "DOWN",
              ArrowLeft: "LEFT", ArrowRight: "RIGHT"};
const AXES = [["W", "S"], ["A", "D"], ["UP", "DOWN"], ["LEFT", "RIGHT"]];
const $ = id => document.getElementById(id);
const params = new URLSearchParams(location.search);
const viewer = {state: "not connected", frames: 0, header: null, action: IDLE, opens: 0,
                error: null};
window.yumeViewer = viewer;
let ws = null, wanted = false, retryDelay = 500, retryTimer = null, downSince = 0;
let held = [];  // action keys held down, oldest first

function show(text) { viewer.state = text; $("info").textContent = text; }

// The action string for the keys held: "W+A UP+LEFT", "S", "RIGHT" or IDLE.
function actionFor(keys) {
  const pick = axis => {
    let best = null;
    for (const k of keys) if (axis.includes(k)) best = k;  // later in the list = newer
    return best;
  };
  const [fwd, side, tilt, turn] = AXES.map(pick);
  const move = [fwd, side].filter(Boolean).join("+");
  const look = [tilt, turn].filter(Boolean).join("+");
  const text = [move, look].filter(Boolean).join(" ");
  return text === "" ? IDLE : text;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function sendAction() {
  const action = actionFor(held);
  if (action === viewer.action) return;
  viewer.action = action;
  $("action").textContent = action;
  send({type: "action", action: action});
}

document.addEventListener("keydown", ev => {
  const key = KEYS[ev.code];
  if (!key || ev.target instanceof HTMLInputElement) return;
  ev.preventDefault();  // arrow keys would scroll the page
  if (ev.repeat) return;
  held = held.filter(k => k !== key).concat([key]);
  sendAction();
});
document.addEventListener("keyup", ev => {
  const key = KEYS[ev.code];
  if (!key) return;
  held = held.filter(k => k !== key);
  sendAction();
});
window.addEventListener("blur", () => { held = []; sendAction(); });  // no key stays stuck

function lastFrameBase64() {
  if (viewer.frames === 0) return null;
  const url = $("view").toDataURL("image/png");
  return url.slice(url.indexOf(",") + 1);
}

function openMessage(resume) {
  const size = parseInt($("size").value, 10);
  const message = {type: "open", engine: $("engine").value, height: size, width: size,
                   format: params.get("format") === "png" ? "png" : "raw"};
  const image = resume ? lastFrameBase64() : null;
  if (image !== null) {
    message.image = image;  // go on from the picture last shown
  } else {
    const seed = parseInt($("seed").value, 10);
    if (!Number.isNaN(seed)) message.seed = seed;
  }
  return message;
}

async function draw(data) {
  const dv = new DataView(data);
  const h = dv.getUint16(AT.height, true), w = dv.getUint16(AT.width, true);
  const header = {format: dv.getUint8(AT.format), height: h, width: w,
                  chunk: dv.getUint32(AT.chunk, true), index: dv.getUint32(AT.index, true),
                  action: dv.getUint8(AT.action), dropped: dv.getUint32(AT.dropped, true)};
  const canvas = $("view");
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  if (header.format === FORMATS.png) {
    const bitmap = await createImageBitmap(new Blob([new Uint8Array(data, HEADER_BYTES)],
                                                    {type: "image/png"}));
    ctx.drawImage(bitmap, 0, 0);
  } else {
    const px = new Uint8Array(data, HEADER_BYTES), img = ctx.createImageData(w, h);
    for (let i = 0, j = 0; i < w * h * 3; i += 3, j += 4) {
      img.data[j] = px[i]; img.data[j + 1] = px[i + 1]; img.data[j + 2] = px[i + 2];
      img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  viewer.header = header;
  viewer.frames += 1;
  show("connected, chunk " + header.chunk + ", frame " + header.index + ", dropped " +
       header.dropped);
}

function connect(resume) {
  clearTimeout(retryTimer);
  const token = $("token").value;
  const proto = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(proto + location.host + WS_PATH +
                               (token ? "?token=" + encodeURIComponent(token) : ""));
  socket.binaryType = "arraybuffer";
  ws = socket;
  show(resume ? "reconnecting" : "connecting");
  socket.onopen = () => { socket.send(JSON.stringify(openMessage(resume))); };
  socket.onmessage = ev => {
    if (socket !== ws) return;
    if (typeof ev.data !== "string") { draw(ev.data); return; }
    const reply = JSON.parse(ev.data);
    if (reply.type === "opened") {
      viewer.opens += 1;
      retryDelay = 500;
      show("opened session " + reply.session + " (" + reply.engine + ")");
      // The new session starts standing still: send the keys held now.
      const action = actionFor(held);
      if (action !== IDLE) send({type: "action", action: action});
    } else if (reply.type === "error") {
      viewer.error = reply.message;
      show(reply.message);
    }
  };
  socket.onclose = ev => {
    if (socket !== ws) return;
    ws = null;
    if (!wanted) { show("closed"); return; }
    // Dropped (a restart, the network): try again, waiting longer each time.
    if (!downSince) downSince = Date.now();
    const waited = Math.round((Date.now() - downSince) / 1000);
    show("reconnecting (" + waited + " s)" + (ev.reason ? ": " + ev.reason : ""));
    retryTimer = setTimeout(() => connect(true), retryDelay);
    retryDelay = Math.min(2 * retryDelay, 8000);
  };
  socket.addEventListener("open", () => { downSince = 0; });
}

$("open").onclick = () => {
  wanted = true;
  viewer.frames = 0;
  if (ws) { const old = ws; ws = null; old.close(); }
  connect(false);
  $("view").focus();
};
$("close").onclick = () => {
  wanted = false;
  clearTimeout(retryTimer);
  send({type: "close"});
};

for (const name of ["engine", "seed", "size", "token"]) {
  if (params.has(name)) $(name).value = params.get(name);
}
if (params.get("autostart") === "1") $("open").click();
</script>
</body>
</html>
"""


def viewer_html() -> str:
    """The viewer page, with the service's WebSocket path and frame layout filled in."""
    return (_PAGE.replace("@WS_PATH@", json.dumps(WS_PATH))
            .replace("@HEADER_BYTES@", str(HEADER.size))
            .replace("@OFFSETS@", json.dumps(HEADER_OFFSETS))
            .replace("@FORMATS@", json.dumps(FORMATS)))
