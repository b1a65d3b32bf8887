// edgecam review: kept frames in a grid; a tap or a key files the selected one, discards it, undoes.
"use strict";
(() => {
  const { byId, percent } = edgecam;
  const PAGE = 120; // cards added at a time ("show more")
  const POLL = 5000; // ms between list refreshes while the page is visible (run --keep may add frames)
  const cards = new Map(); // stem -> card element
  let frames = []; // the filtered list, newest first
  let labels = [];
  let dataset = null;
  let selected = null; // stem
  let limit = PAGE;
  let pending = 0; // actions sent or waiting to be sent
  let generation = 0; // counts actions: a list read across one is dropped

  function say(text, error = false) {
    byId("message").textContent = text;
    byId("message").className = error ? "error" : "dim";
  }

  async function getJSON(path, params) {
    const response = await fetch(edgecam.withToken(path, params), { cache: "no-store" });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  function fillSelect(menu, counts) {
    const keep = menu.value;
    const names = Object.keys(counts);
    if (keep && !names.includes(keep)) names.push(keep);
    const key = JSON.stringify([names, counts]);
    if (menu.dataset.key === key) return; // unchanged: an open menu stays open
    menu.dataset.key = key;
    menu.replaceChildren(new Option("all", ""),
      ...names.map((name) => new Option(`${name.replace(/_/g, " ")} (${counts[name] || 0})`, name)));
    menu.value = keep;
  }

  function makeTargets(names) {
    const key = JSON.stringify([names, dataset]);
    const box = byId("labels");
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...names.map((label, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "target";
      button.dataset.label = label;
      button.innerHTML = "<kbd></kbd><span></span>";
      button.querySelector("kbd").textContent = i < 9 ? String(i + 1) : "";
      button.querySelector("span").textContent = label;
      button.addEventListener("click", () => act("file", { label }));
      return button;
    }));
    for (const id of ["new-label", "background"]) byId(id).hidden = !dataset;
    if (!dataset) say("No dataset to file into here (edgecam review DIR --dataset DATASET_DIR files); x, u work.");
  }

  function makeCard(frame) {
    const card = document.createElement("figure");
    card.className = "card";
    card.tabIndex = -1;
    card.dataset.stem = frame.stem;
    card.innerHTML = '<img loading="lazy" alt=""><figcaption><b class="guess"></b> <span class="score"></span>'
      + '<span class="tag"></span><span class="when dim"></span></figcaption>';
    const img = card.querySelector("img");
    img.src = edgecam.withToken(frame.image);
    img.alt = `kept frame ${frame.frame ?? ""}: the model said ${frame.label}`;
    card.querySelector(".guess").textContent = frame.label || "?";
    const best = (frame.top || [])[0]; // a guess of "unknown" has no score of its own: show the best label's
    card.querySelector(".score").textContent = typeof frame.score === "number" ? percent(frame.score)
      : best ? `${best.label} ${percent(best.score)}` : "";
    const tag = card.querySelector(".tag");
    tag.textContent = (frame.reason || "?").replace(/_/g, " ");
    tag.dataset.reason = frame.reason;
    const top = (frame.top || []).map((t) => `${t.label} ${percent(t.score)}`).join(", ");
    const unknown = typeof frame.unknown_score === "number" ? `, unknown score ${frame.unknown_score.toFixed(2)}` : "";
    card.title = `${frame.stem}\n${top}${unknown}`;
    if (frame.time) card.querySelector(".when").textContent = new Date(frame.time * 1000).toLocaleString();
    card.addEventListener("click", () => select(frame.stem));
    return card;
  }

  function render() {
    const grid = byId("grid");
    const shown = frames.slice(0, limit);
    const wanted = new Set(shown.map((f) => f.stem));
    for (const [stem, card] of cards) {
      if (!wanted.has(stem)) { card.remove(); cards.delete(stem); }
    }
    shown.forEach((frame, i) => {
      let card = cards.get(frame.stem);
      if (!card) { card = makeCard(frame); cards.set(frame.stem, card); }
      if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
    });
    byId("more").hidden = frames.length <= limit;
    byId("empty").hidden = frames.length > 0;
    if (!selected || !cards.has(selected)) select(shown.length ? shown[0].stem : null, false);
  }

  function select(stem, scroll = true) {
    for (const card of document.querySelectorAll(".card.selected")) card.classList.remove("selected");
    selected = stem;
    const card = stem && cards.get(stem);
    if (card) {
      card.classList.add("selected");
      if (scroll) card.scrollIntoView({ block: "nearest" });
    }
  }

  // Arrow keys: one card sideways, or one row (the cards that share the first card's top) up or down.
  function step(delta, rows = false) {
    const all = [...byId("grid").children];
    if (!all.length) return;
    const at = Math.max(0, all.findIndex((card) => card.dataset.stem === selected));
    const perRow = rows ? Math.max(1, all.filter((card) => card.offsetTop === all[0].offsetTop).length) : 1;
    select(all[Math.max(0, Math.min(all.length - 1, at + delta * perRow))].dataset.stem);
  }

  async function refresh() {
    const asked = generation;
    try {
      const data = await getJSON("api/kept", { reason: byId("reason").value, label: byId("guess").value });
      if (asked !== generation || pending) return; // an action came meanwhile: its own refresh follows
      frames = data.frames;
      labels = data.labels;
      dataset = data.dataset;
      fillSelect(byId("reason"), data.reasons);
      fillSelect(byId("guess"), data.guesses);
      makeTargets(labels);
      const name = (path) => path.split(/[\\/]/).pop();
      byId("folder").textContent = name(data.kept_dir) + (dataset ? ` → ${name(dataset)}` : "");
      byId("counts").textContent = `${frames.length} of ${data.total} shown`;
      byId("undo").disabled = !data.undo;
      byId("undo").title = data.undo ? `undo: ${describe(data.undo)}` : "nothing to undo";
      byId("live").hidden = !data.live;
      edgecam.setPill(byId("conn"), `${data.total} kept`, "ok");
      render();
    } catch (err) {
      edgecam.setPill(byId("conn"), "offline", "warn");
      say(`cannot list the kept frames: ${err.message}`, true);
    }
  }

  function describe(action) {
    if (action.action === "discard") return `discarded ${action.stem}`;
    return `${action.action === "background" ? "background" : action.label} ← ${action.stem}`;
  }

  // An action takes its frame off the grid at once and selects the next one; the requests go to the
  // server one after the other, in the order given (fast keys lose nothing), and the list is read
  // again once none is waiting. A failed one says why, and the next list shows the frame again.
  let queue = Promise.resolve();
  function act(action, body = {}) {
    const stem = selected;
    if (action !== "undo" && !stem) { say("no frame selected", true); return Promise.resolve(); }
    generation += 1; // a list asked for before this action is out of date
    if (action !== "undo") {
      const index = frames.findIndex((f) => f.stem === stem);
      const next = frames[index + 1] || frames[index - 1];
      frames = frames.filter((f) => f.stem !== stem);
      selected = next ? next.stem : null;
      render();
      select(selected);
    }
    pending += 1;
    const done = queue.then(() => send(action, stem, body));
    queue = done;
    return done;
  }

  async function send(action, stem, body) {
    try {
      const result = await edgecam.post(`api/${action}`, action === "undo" ? {} : { stem, ...body });
      if (action === "undo") {
        say(`undone: ${describe(result.undone)}`);
        selected = result.undone.stem;
      } else {
        say(action === "discard" ? `discarded ${stem}` : `filed ${result.filed}`);
      }
    } catch (err) {
      say(`${action}: ${err.message}`, true);
    } finally {
      pending -= 1;
    }
    if (pending) return;
    await refresh();
    if (selected) select(selected);
  }

  document.addEventListener("keydown", (event) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      act("undo");
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const index = "123456789".indexOf(event.key);
    const moves = { ArrowRight: [1], ArrowLeft: [-1], ArrowDown: [1, true], ArrowUp: [-1, true], j: [1], k: [-1] };
    if (index >= 0 && index < labels.length && dataset) act("file", { label: labels[index] });
    else if (event.key === "b" && dataset) act("background");
    else if (event.key === "x" || event.key === "Delete") act("discard");
    else if (event.key === "u") act("undo");
    else if (event.key in moves) step(...moves[event.key]);
    else return;
    event.preventDefault();
  });
  byId("background").addEventListener("click", () => act("background"));
  byId("discard").addEventListener("click", () => act("discard"));
  byId("undo").addEventListener("click", () => act("undo"));
  byId("new-label").addEventListener("submit", (event) => {
    event.preventDefault();
    const label = byId("new-name").value.trim();
    if (!label) { say("type a label first", true); return; }
    act("file", { label }).then(() => { if (labels.includes(label)) byId("new-name").value = ""; });
    byId("new-name").blur();
  });
  byId("more").addEventListener("click", () => { limit += PAGE; render(); });
  for (const id of ["reason", "guess"]) {
    byId(id).addEventListener("change", () => { limit = PAGE; selected = null; refresh(); byId(id).blur(); });
  }
  // Cards scrolled to by keys stay clear of the action bar stuck to the bottom.
  const pad = () => { document.documentElement.style.scrollPaddingBottom = `${byId("bar").offsetHeight + 8}px`; };
  window.addEventListener("resize", pad);
  pad();
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  setInterval(() => { if (!document.hidden && !pending) refresh(); }, POLL);
  refresh();
})();
