// The echo client behind /ws.html: connects to percore's /ws endpoint, sends text or binary
// messages, and logs everything that happens (with the time it happened) in the page.
"use strict";

const ui = Object.fromEntries(
  ["url", "connect", "disconnect", "state", "connection", "composer", "message", "send", "binary", "clear", "log"]
    .map((id) => [id, document.getElementById(id)]),
);

// WebSocket.readyState, as words.
const STATES = ["connecting", "open", "closing", "closed"];

// The status codes of RFC 6455 section 7.4.1 a user is likely to meet.
const CLOSE_CODES = {
  1000: "normal closure",
  1001: "going away",
  1002: "protocol error",
  1003: "unsupported data",
  1005: "no status code",
  1006: "abnormal closure, no close frame",
  1007: "invalid payload data",
  1008: "policy violation",
  1009: "message too big",
  1010: "missing extension",
  1011: "internal server error",
  1015: "TLS handshake failure",
};

// Longer messages are cut in the log (not on the wire) so the page stays responsive.
const SHOWN_CHARS = 2000;
const SHOWN_BYTES = 64;

let socket = null;

// The page's own server: ws: or wss: to match http: or https:, same host and port, path /ws.
function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const host = location.host || "localhost:8001"; // A page opened from a file has no host.
  return `${scheme}//${host}/ws`;
}

function showState() {
  const state = socket ? STATES[socket.readyState] : "closed";
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.url.readOnly = state !== "closed";
  ui.connect.disabled = state !== "closed";
  ui.disconnect.disabled = state !== "connecting" && state !== "open";
  ui.send.disabled = state !== "open";
}

function clock(date) {
  const two = (n) => String(n).padStart(2, "0");
  const millis = String(date.getMilliseconds()).padStart(3, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${millis}`;
}

// Appends one entry; `kind` is its CSS class (sent, received, open, closed, error, info).
function log(kind, text, label = kind) {
  const now = new Date();
  const time = document.createElement("time");
  time.dateTime = now.toISOString();
  time.textContent = clock(now);
  const tag = document.createElement("span");
  tag.className = "kind";
  tag.textContent = label;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const entry = document.createElement("p");
  entry.className = `entry ${kind}`;
  entry.append(time, " ", tag, " ", body);
  ui.log.append(entry);
  ui.log.scrollTop = ui.log.scrollHeight;
}

function describeText(text) {
  if (text.length <= SHOWN_CHARS) return text;
  return `${text.slice(0, SHOWN_CHARS)}… (${text.length - SHOWN_CHARS} more characters)`;
}

// "5 bytes: 68 65 6c 6c 6f (hello)": hex, then the text when the bytes are valid UTF-8.
function describeBytes(bytes) {
  const hex = Array.from(bytes.subarray(0, SHOWN_BYTES), (b) => b.toString(16).padStart(2, "0"));
  let text = `${bytes.length} byte${bytes.length === 1 ? "" : "s"}: ${hex.join(" ")}`;
  if (bytes.length > SHOWN_BYTES) text += " …";
  try {
    text += ` (${describeText(new TextDecoder("utf-8", { fatal: true }).decode(bytes))})`;
  } catch {
    // Not UTF-8: the hex says it all.
  }
  return text;
}

function describeClose(event) {
  let text = `code ${event.code} (${CLOSE_CODES[event.code] ?? "unknown"})`;
  if (event.reason) text += `, reason "${event.reason}"`;
  if (!event.wasClean) text += ", not clean";
  return text;
}

function connect() {
  if (socket) return;
  let ws;
  try {
    ws = new WebSocket(ui.url.value);
  } catch (err) {
    log("error", `cannot connect: ${err.message}`);
    return;
  }
  ws.binaryType = "arraybuffer";
  ws.addEventListener("open", () => {
    log("open", `connected to ${ws.url}`, "open");
    showState();
    ui.message.focus();
  });
  ws.addEventListener("message", (event) => {
    if (typeof event.data === "string") log("received", describeText(event.data));
    else log("received", describeBytes(new Uint8Array(event.data)), "received binary");
  });
  ws.addEventListener("error", () => {
    // Browsers deliberately give no detail here; the close event that follows has the code.
    log("error", "the connection failed or broke");
  });
  ws.addEventListener("close", (event) => {
    log("closed", describeClose(event));
    socket = null;
    showState();
  });
  socket = ws;
  log("info", `connecting to ${ws.url}`, "connecting");
  showState();
}

function disconnect() {
  if (!socket) return;
  socket.close(1000);
  log("info", "closing with code 1000", "closing");
  showState();
}

function send() {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const text = ui.message.value;
  if (ui.binary.checked) {
    const bytes = new TextEncoder().encode(text);
    socket.send(bytes);
    log("sent", describeBytes(bytes), "sent binary");
  } else {
    socket.send(text);
    log("sent", describeText(text));
  }
  ui.message.select(); // Enter again resends; typing replaces.
}

ui.connection.addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
ui.disconnect.addEventListener("click", disconnect);
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.clear.addEventListener("click", () => ui.log.replaceChildren());

ui.url.value = defaultUrl();
showState();
