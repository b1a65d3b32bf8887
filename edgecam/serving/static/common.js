// Shared by the live pages: the access token, the MJPEG stream, server-sent status, JSON posts.
"use strict";
const edgecam = (() => {
  // The token arrives in the page's address (?token=...) and goes along with every request.
  const token = new URLSearchParams(location.search).get("token") || "";

  function withToken(path, params = {}) {
    const query = new URLSearchParams(params);
    if (token) query.set("token", token);
    const text = query.toString();
    return text ? `${path}?${text}` : path;
  }

  function setPill(pill, text, kind) {
    pill.textContent = text;
    pill.className = `pill ${kind || ""}`;
  }

  // <img> shows multipart/x-mixed-replace natively; started after "load" so the page counts as loaded.
  function attachStream(img, placeholder) {
    const start = () => { img.src = withToken("stream.mjpg", { t: Date.now() }); };
    img.addEventListener("load", () => { placeholder.hidden = true; });
    img.addEventListener("error", () => { placeholder.hidden = false; setTimeout(start, 2000); });
    if (document.readyState === "complete") start(); else window.addEventListener("load", start);
  }

  // Status as server-sent events (the browser reconnects by itself after a drop).
  function listen(onStatus, pill) {
    const events = new EventSource(withToken("api/events"));
    events.onopen = () => setPill(pill, "live", "ok");
    events.onerror = () => setPill(pill, events.readyState === EventSource.CLOSED ? "stopped" : "reconnecting…", "warn");
    events.onmessage = (event) => onStatus(JSON.parse(event.data));
    return events;
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  const percent = (score) => `${Math.round(score * 100)}%`;
  const byId = (id) => document.getElementById(id);
  return { token, withToken, setPill, attachStream, listen, post, percent, byId };
})();
