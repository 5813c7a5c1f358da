/* skyweave dashboard: graphs (cytoscape + dagre), live updates (server-sent events), actions. */
(function () {
  "use strict";
  const COLORS = {
    succeeded: "#2e7d32", failed: "#c62828", running: "#1565c0", dispatched: "#1976d2", queued: "#9e9e9e",
    created: "#bdbdbd", pending: "#e0e0e0", retry_wait: "#ef6c00", backtracking: "#8e24aa", parked: "#6d4c41",
    cancelled: "#616161", skipped: "#90a4ae", reused: "#43a047"
  };
  const notice = (text, kind) => {
    const el = document.getElementById("notice");
    if (!el) return;
    if (!text) { el.hidden = true; el.textContent = ""; return; }
    el.textContent = text; el.className = "notice " + (kind || "info"); el.hidden = false;
  };
  const style = [
    { selector: "node", style: { "label": "data(label)", "text-wrap": "wrap", "text-valign": "center", "shape": "round-rectangle",
      "width": "label", "height": "label", "padding": "10px", "font-size": "12px", "color": "#fff",
      "background-color": (n) => COLORS[n.data("state")] || "#757575", "text-outline-width": 0 } },
    { selector: "node[kind = 'product']", style: { "shape": "rectangle", "background-color": "#fff8e1", "color": "#333",
      "border-width": 1, "border-color": "#ffb300" } },
    { selector: "node[?root]", style: { "border-width": 3, "border-color": "#d84315" } },
    { selector: "edge", style: { "width": 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle",
      "line-color": "#90a4ae", "target-arrow-color": "#90a4ae", "font-size": "10px" } },
    { selector: "edge[label]", style: { "label": "data(label)" } },
    { selector: ":selected", style: { "border-width": 3, "border-color": "#000" } }
  ];
  const draw = (container, elements, onTap) => {
    const cy = cytoscape({ container: container, elements: elements, style: style,
                           layout: { name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 50 } });
    if (onTap) cy.on("tap", "node", (e) => onTap(e.target));
    container.dataset.drawn = String(cy.nodes().length);
    return cy;
  };
  const badges = (counts) => Object.entries(counts).map(([s, n]) =>
    `<span class="badge ${s}">${n} ${s}</span>`).join(" ");

  const skyweave = {};
  skyweave.runPage = function (runId, elements, status) {
    const box = document.getElementById("graph");
    let cy = draw(box, elements, (node) => {
      document.querySelectorAll("#activities tbody tr").forEach((tr) => {
        tr.hidden = node.selected() ? false : !tr.classList.contains("node-" + node.id());
      });
    });
    let pending = null;
    const refresh = () => {
      pending = null;
      fetch(`/ui/runs/${encodeURIComponent(runId)}/graph`, { credentials: "same-origin" })
        .then((r) => r.ok ? r.json() : Promise.reject(r.status))
        .then((data) => {
          const known = new Set(cy.elements().map((e) => e.id()));
          let grew = false;
          data.elements.forEach((el) => {
            if (known.has(el.data.id)) cy.getElementById(el.data.id).data(el.data);
            else { cy.add(el); grew = true; }
          });
          if (grew) cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 50 }).run();
          box.dataset.drawn = String(cy.nodes().length);
          box.dataset.total = String(data.total);
          document.getElementById("run-total").textContent = data.total;
          document.getElementById("run-counts").innerHTML = badges(data.counts);
          const st = document.getElementById("run-state");
          st.textContent = data.status; st.className = "badge " + data.status;
        }).catch(() => notice("Could not refresh the run (is the server up?)", "error"));
    };
    const later = () => { if (!pending) pending = setTimeout(refresh, 250); };
    if (["succeeded", "failed", "cancelled"].includes(status)) return;
    const source = new EventSource(`/api/v1/runs/${encodeURIComponent(runId)}/events`);
    let live = false;
    source.onopen = () => { live = true; notice(""); document.body.dataset.live = "1"; };
    ["progress", "activity", "product", "run"].forEach((kind) => source.addEventListener(kind, later));
    source.addEventListener("end", () => { source.close(); document.body.dataset.live = "ended"; refresh(); });
    source.onerror = () => {
      document.body.dataset.live = "0";
      notice(live ? "Live updates disconnected: reconnecting…" : "Live updates unavailable: reconnecting…", "error");
    };
  };
  skyweave.lineage = function (id, elements) {
    const box = document.getElementById(id);
    if (!elements.length) { box.textContent = "nothing"; box.classList.add("empty"); return; }
    draw(box, elements, (node) => { if (node.data("href")) window.location = node.data("href"); });
  };
  skyweave.setPriority = function (url, inputId) {
    const value = parseInt(document.getElementById(inputId).value, 10);
    fetch(url, { method: "PUT", credentials: "same-origin",
                 headers: { "Content-Type": "application/json", "X-Skyweave-UI": "1" },
                 body: JSON.stringify({ priority: value }) })
      .then((r) => r.ok ? notice("priority set to " + value) : r.json().then((b) => notice(b.detail || b.error || r.status, "error")));
  };
  document.addEventListener("htmx:responseError", (e) => {
    let text = "request failed (" + e.detail.xhr.status + ")";
    try { const b = JSON.parse(e.detail.xhr.responseText); text = b.detail || b.error || text; } catch (_) { /* not JSON */ }
    notice(text, "error");
  });
  document.addEventListener("htmx:afterRequest", (e) => {
    if (e.detail.successful) notice("done: " + (e.detail.requestConfig.verb || "").toUpperCase() + " " + e.detail.pathInfo.requestPath);
  });
  window.skyweave = skyweave;
})();
