// edgecam run --serve: the stream plus the latest result (labels, scores, FPS), live.
"use strict";
(() => {
  const { byId, percent } = edgecam;
  edgecam.attachStream(byId("stream"), byId("nostream"));

  function renderBars(top) {
    const list = byId("top");
    while (list.children.length < top.length) {
      const row = document.createElement("li");
      row.innerHTML = '<span class="name"></span><span class="bar"><i></i></span><span class="pct"></span>';
      list.append(row);
    }
    while (list.children.length > top.length) list.lastChild.remove();
    top.forEach(({ label, score }, i) => {
      const row = list.children[i];
      row.querySelector(".name").textContent = label;
      row.querySelector(".bar i").style.width = percent(Math.max(0, Math.min(1, score)));
      row.querySelector(".pct").textContent = percent(score);
    });
  }

  edgecam.listen((status) => {
    byId("model").textContent = status.model.split(/[\\/]/).pop();
    // which bytes run: a reloaded model shows its new hash
    byId("sha256").textContent = status.model_sha256 ? `sha256 ${status.model_sha256.slice(0, 12)}` : "";
    byId("source").textContent = status.source || "–";
    byId("viewers").textContent = status.viewers;
    byId("review").hidden = !status.review; // run --keep: a tab to the kept frames
    const result = status.result;
    if (!result) return;
    byId("label").textContent = result.label;
    byId("score").textContent = percent(result.score);
    renderBars(result.top);
    byId("fps").textContent = result.fps.toFixed(1);
    byId("inference").textContent = `${result.inference_ms.toFixed(1)} ms`;
    byId("latency").textContent = `${result.latency_ms.toFixed(1)} ms`;
    byId("frame").textContent = result.frame;
  }, byId("conn"));
})();
