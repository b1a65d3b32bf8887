// edgecam collect --serve: one button per label, single photos or bursts, counts live.
"use strict";
(() => {
  const { byId } = edgecam;
  const buttons = new Map();
  let defaultsSet = false;
  edgecam.attachStream(byId("stream"), byId("nostream"));

  function say(text, error = false) {
    const message = byId("message");
    message.textContent = text;
    message.className = error ? "error" : "dim";
  }

  function flash(label) {
    const button = buttons.get(label);
    if (!button) return;
    button.classList.add("flash");
    setTimeout(() => button.classList.remove("flash"), 300);
  }

  async function take(label) {
    const burst = document.querySelector("input[name=mode]:checked").value === "burst";
    try {
      if (burst) {
        const count = parseInt(byId("count").value, 10);
        const interval = parseFloat(byId("interval").value);
        await edgecam.post("api/burst", { label, count, interval });
        say(`burst: ${count} × ${label}`);
      } else {
        const result = await edgecam.post("api/save", { label });
        flash(label);
        say(`saved ${result.saved}`);
      }
    } catch (err) {
      say(`not saved: ${err.message}`, true);
    }
  }

  function makeButtons(labels) {
    const box = byId("labels");
    labels.forEach((label, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "label";
      button.dataset.label = label;
      button.innerHTML = '<kbd></kbd><span class="name"></span><span class="count">0</span>';
      button.querySelector("kbd").textContent = i < 9 ? String(i + 1) : "";
      button.querySelector(".name").textContent = label;
      button.addEventListener("click", () => take(label));
      box.append(button);
      buttons.set(label, button);
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
    const index = "123456789".indexOf(event.key);
    const label = [...buttons.keys()][index];
    if (index >= 0 && label !== undefined) take(label);
  });
  byId("stop").addEventListener("click", () => edgecam.post("api/stop", {}).catch((err) => say(err.message, true)));

  let lastSaved = null;
  let lastBurst = null;
  edgecam.listen((status) => {
    if (!buttons.size) makeButtons(status.labels);
    if (!defaultsSet) {
      byId("count").value = status.defaults.burst;
      byId("interval").value = status.defaults.interval;
      defaultsSet = true;
    }
    byId("dataset").textContent = status.dataset.split(/[\\/]/).pop();
    byId("path").textContent = status.dataset;
    byId("fps").textContent = status.fps.toFixed(1);
    byId("source").textContent = status.source || "–";
    for (const [label, count] of Object.entries(status.counts)) {
      const button = buttons.get(label);
      if (button) button.querySelector(".count").textContent = `${count} photo${count === 1 ? "" : "s"}`;
    }
    if (status.last && status.last !== lastSaved) {
      if (lastSaved !== null) flash(status.last.split("/")[0]);
      lastSaved = status.last;
    }
    const burst = status.burst;
    byId("burst").hidden = !(burst && burst.running);
    if (burst) {
      byId("burst-progress").max = burst.total;
      byId("burst-progress").value = burst.done;
      byId("burst-text").textContent = `${burst.label}: ${burst.done}/${burst.total}`;
      const key = `${burst.label}/${burst.total}/${burst.done}/${burst.running}`;
      if (!burst.running && key !== lastBurst && lastBurst !== null) {
        if (burst.error) say(`burst stopped: ${burst.error}`, true);
        else say(`burst done: ${burst.done} × ${burst.label}`);
      }
      lastBurst = key;
    }
  }, byId("conn"));
})();
