// AgentTrace live view (docs/live-view.md). Hand-written, no library, no CDN.
//
// Every string shown comes from spans, which anyone who can send spans controls: the DOM is built with
// createElement and textContent only, never innerHTML with data, and the server's content-security-policy
// forbids inline script as a second wall.
"use strict";

(function () {
  const REFRESH_MS = 3000;
  const SVG = "http://www.w3.org/2000/svg";

  // --- the admin API's token: RFC 6750's access_token in the page address, kept for this tab only ---
  const pageParams = new URLSearchParams(location.search);
  let token = pageParams.get("access_token") || sessionStorage.getItem("agenttrace.access_token") || "";
  if (pageParams.get("access_token")) sessionStorage.setItem("agenttrace.access_token", token);

  const statusLine = document.getElementById("status");
  function setStatus(text, bad) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", !!bad);
  }

  async function getJSON(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Error("unauthorized: open this page as /?access_token=TOKEN");
    const text = await response.text();
    if (!response.ok) {
      let message = text.trim();
      try {
        const body = JSON.parse(text);
        if (body && body.errors && body.errors.length) message = body.errors.map((e) => e.msg).join("; ");
      } catch (_) { /* not JSON */ }
      const error = new Error(path.split("?")[0] + " answered " + response.status + ": " + message);
      error.status = response.status;
      throw error;
    }
    return path === "/api/self-metrics" ? text : JSON.parse(text);
  }

  // --- DOM helpers: text is always a text node ---
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      else if (key === "data") for (const [name, v] of Object.entries(value)) node.dataset[name] = String(v);
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.setAttribute("class", value);
      else if (key === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      else node.setAttribute(key, String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function definitions(pairs) {
    const dl = el("dl");
    for (const [term, value] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      dl.appendChild(el("dt", null, term));
      dl.appendChild(el("dd", null, value));
    }
    return dl;
  }

  // --- formatting ---
  function ms(value) {
    if (value === undefined || value === null || isNaN(value)) return "–";
    if (value >= 1000) return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + " s";
    if (value >= 10) return value.toFixed(0) + " ms";
    return value.toFixed(value >= 1 ? 1 : 2) + " ms";
  }
  function micros(value) { return ms(value / 1000); }
  function count(value) {
    if (value === undefined || value === null || isNaN(value)) return "–";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e4) return (value / 1e3).toFixed(1) + "k";
    return String(Math.round(value * 100) / 100);
  }
  function percent(share) { return isNaN(share) ? "–" : (share * 100).toFixed(share > 0 && share < 0.1 ? 1 : 0) + "%"; }
  function clock(unixMillis) {
    const date = new Date(unixMillis);
    return isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
  }
  function when(unixMillis) {
    const date = new Date(unixMillis);
    return isNaN(date.getTime()) ? "" : date.toLocaleDateString() + " " + clock(unixMillis);
  }

  // --- tabs ---
  const tabs = ["agents", "incidents", "traces", "collector"];
  let activeTab = "agents";
  function showTab(name) {
    if (!tabs.includes(name)) name = "agents";
    activeTab = name;
    for (const tab of tabs) {
      document.getElementById("panel-" + tab).hidden = tab !== name;
      document.getElementById("tab-" + tab).setAttribute("aria-selected", String(tab === name));
    }
    refresh();
  }
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      history.replaceState(null, "", location.pathname + location.search + "#" + button.dataset.tab);
      showTab(button.dataset.tab);
    });
  }

  // ================================ Agents ================================
  const graphView = document.getElementById("graph");
  const graphDetails = document.getElementById("graph-details");
  const graphLegend = document.getElementById("graph-legend");
  let graph = { nodes: [], edges: [] };
  let previousRequests = null; // {at, edges: Map(id -> requests), nodes: Map(id -> requests)}
  let rates = { edges: new Map(), nodes: new Map() };
  let selected = null; // {kind: "node"|"edge", id}
  const typeColours = new Map();
  const palette = ["#2f6fde", "#8a4fd8", "#2f9e5b", "#d9822b", "#0f9fb0", "#c43f8a", "#6b7f2a", "#8c6d46", "#5560a8", "#b0453a"];

  function nodeType(node) { return node.detail__agent_type || node.subtitle || "service"; }
  function colourOf(type) {
    if (!typeColours.has(type)) typeColours.set(type, palette[typeColours.size % palette.length]);
    return typeColours.get(type);
  }

  async function refreshAgents() {
    const data = await getJSON("/api/service-graph");
    const now = performance.now();
    const edgeRequests = new Map(data.edges.map((e) => [e.id, e.detail__requests || 0]));
    const nodeRequests = new Map(data.nodes.map((n) => [n.id, n.detail__requests || 0]));
    if (previousRequests && now > previousRequests.at) {
      const seconds = (now - previousRequests.at) / 1000;
      rates = { edges: new Map(), nodes: new Map() };
      for (const [id, value] of edgeRequests) rates.edges.set(id, Math.max(0, value - (previousRequests.edges.get(id) || 0)) / seconds);
      for (const [id, value] of nodeRequests) rates.nodes.set(id, Math.max(0, value - (previousRequests.nodes.get(id) || 0)) / seconds);
    }
    previousRequests = { at: now, edges: edgeRequests, nodes: nodeRequests };
    graph = data;
    drawGraph();
    if (selected) showSelection(false);
  }

  // Layered layout: a node's column is its distance from the callers nobody calls (user, roots), rows in order.
  function layout(nodes, edges) {
    const incoming = new Map(nodes.map((n) => [n.id, 0]));
    const outgoing = new Map(nodes.map((n) => [n.id, []]));
    for (const edge of edges) {
      if (edge.source === edge.target) continue;
      incoming.set(edge.target, (incoming.get(edge.target) || 0) + 1);
      if (outgoing.has(edge.source)) outgoing.get(edge.source).push(edge.target);
    }
    const depth = new Map();
    let queue = nodes.filter((n) => !incoming.get(n.id)).map((n) => n.id);
    if (queue.length === 0 && nodes.length) queue = [nodes[0].id];
    for (const id of queue) depth.set(id, 0);
    for (let i = 0; i < queue.length; i++) {
      const id = queue[i];
      for (const next of outgoing.get(id) || []) {
        if (!depth.has(next)) { depth.set(next, depth.get(id) + 1); queue.push(next); }
      }
      if (i === queue.length - 1) {
        const rest = nodes.find((n) => !depth.has(n.id)); // a cycle nobody reaches
        if (rest) { depth.set(rest.id, 0); queue.push(rest.id); }
      }
    }
    const columns = [];
    for (const node of nodes) {
      const d = depth.get(node.id) || 0;
      (columns[d] = columns[d] || []).push(node);
    }
    const positions = new Map();
    const columnWidth = 230, rowHeight = 70, margin = 50;
    let tallest = 0;
    columns.forEach((column, c) => {
      column.sort((a, b) => nodeType(a).localeCompare(nodeType(b)) || a.id.localeCompare(b.id));
      tallest = Math.max(tallest, column.length);
      column.forEach((node, r) => positions.set(node.id, { x: margin + c * columnWidth, y: margin + r * rowHeight }));
    });
    return { positions, width: margin * 2 + Math.max(0, columns.length - 1) * columnWidth + 120, height: margin * 2 + Math.max(0, tallest - 1) * rowHeight + 20 };
  }

  function edgeLabel(edge) {
    const parts = [];
    const rate = rates.edges.get(edge.id);
    parts.push(rate === undefined ? count(edge.detail__requests) + " calls" : count(rate) + " r/s");
    const requests = edge.detail__requests || 0;
    parts.push(percent(requests ? (edge.detail__failed || 0) / requests : 0) + " err");
    if (edge.detail__p95_ms !== undefined) parts.push("p95 " + ms(edge.detail__p95_ms));
    const tokens = edgeTokensText(edge);
    if (tokens) parts.push(tokens);
    return parts.join(" · ");
  }
  // The graph counts tokens on the agent that used them; an edge from an agent to its one model carries
  // that agent's tokens (an agent with several models: its total, marked "agent").
  function edgeTokens(edge) {
    if (edge.detail__connection_type !== "model") return 0;
    const agent = graph.nodes.find((n) => n.id === edge.source);
    return agent ? (agent.detail__input_tokens || 0) + (agent.detail__output_tokens || 0) : 0;
  }
  function edgeTokensText(edge) {
    const tokens = edgeTokens(edge);
    if (!tokens) return "";
    const models = graph.edges.filter((e) => e.source === edge.source && e.detail__connection_type === "model").length;
    return count(tokens) + " tok" + (models > 1 ? " (agent)" : "");
  }

  function drawGraph() {
    const { nodes, edges } = graph;
    document.getElementById("graph-empty").hidden = nodes.length > 0;
    const { positions, width, height } = layout(nodes, edges);
    clear(graphView);
    graphView.setAttribute("viewBox", "0 0 " + Math.max(width, 400) + " " + Math.max(height, 300));
    graphView.setAttribute("width", String(Math.max(width, 400)));
    graphView.setAttribute("height", String(Math.max(height, 300)));
    graphView.appendChild(svg("defs", null, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa3b5" }))));
    const radius = 16;
    for (const edge of edges) {
      const from = positions.get(edge.source), to = positions.get(edge.target);
      if (!from || !to) continue;
      let d;
      if (edge.source === edge.target) {
        d = `M ${from.x - 8} ${from.y - radius} C ${from.x - 30} ${from.y - 60}, ${from.x + 30} ${from.y - 60}, ${from.x + 8} ${from.y - radius}`;
      } else {
        const dx = to.x - from.x, dy = to.y - from.y, length = Math.hypot(dx, dy) || 1;
        const x1 = from.x + (dx / length) * radius, y1 = from.y + (dy / length) * radius;
        const x2 = to.x - (dx / length) * (radius + 2), y2 = to.y - (dy / length) * (radius + 2);
        // a gentle curve to the right of the direction of travel (A->B and B->A apart), a wide one for back edges
        const bend = dx <= 0 ? 60 : 16;
        const cx = (x1 + x2) / 2 - (dy / length) * bend, cy = (y1 + y2) / 2 + (dx / length) * bend;
        d = `M ${x1} ${y1} Q ${cx} ${cy}, ${x2} ${y2}`;
      }
      const requests = edge.detail__requests || 0;
      const failing = requests > 0 && (edge.detail__failed || 0) > 0;
      const group = svg("g", {
        class: "edge" + (failing ? " failing" : "") + (selected && selected.kind === "edge" && selected.id === edge.id ? " selected" : ""),
        "data-id": edge.id, "data-source": edge.source, "data-target": edge.target,
        on: { click: () => select("edge", edge.id) },
      },
      svg("title", null, edge.source + " → " + edge.target + ": " + edgeLabel(edge)),
      svg("path", { d, class: "hit" }),
      svg("path", { d, class: "line", "marker-end": "url(#arrow)", "stroke-width": String(1 + Math.min(5, Math.log10(1 + requests))) }));
      // the label on the other side of the chord from the curve, so it never covers the line it names
      const back = to.x - from.x <= 0;
      const mx = edge.source === edge.target ? from.x : (from.x + to.x) / 2 + (back ? 30 : 0);
      const my = edge.source === edge.target ? from.y - 62 : (from.y + to.y) / 2 + (back ? 30 : -8);
      group.appendChild(svg("text", { x: mx, y: my, "text-anchor": "middle", class: "edge-label" }, edgeLabel(edge)));
      graphView.appendChild(group);
    }
    const types = new Set();
    for (const node of nodes) {
      const at = positions.get(node.id);
      const type = nodeType(node);
      types.add(type);
      const failed = node.arc__failed || 0;
      const group = svg("g", {
        class: "node" + (selected && selected.kind === "node" && selected.id === node.id ? " selected" : ""),
        "data-id": node.id, "data-type": type, transform: `translate(${at.x} ${at.y})`,
        on: { click: () => select("node", node.id) },
      },
      svg("title", null, node.id + " (" + type + ")"),
      svg("circle", { r: radius, fill: colourOf(type) }));
      if (failed > 0) {
        // the failed share as a red arc around the node, as Grafana's node graph draws arc__failed
        const angle = Math.min(failed, 0.999) * 2 * Math.PI;
        const r = radius + 3;
        const x = r * Math.sin(angle), y = -r * Math.cos(angle);
        group.appendChild(svg("path", { d: `M 0 ${-r} A ${r} ${r} 0 ${angle > Math.PI ? 1 : 0} 1 ${x} ${y}`, fill: "none", stroke: "#d2353b", "stroke-width": "3" }));
      }
      group.appendChild(svg("text", { y: radius + 13, "text-anchor": "middle", class: "node-label" }, node.title || node.id));
      graphView.appendChild(group);
    }
    clear(graphLegend);
    for (const type of [...types].sort()) {
      const item = el("span", null, type);
      item.style.setProperty("--swatch", colourOf(type));
      graphLegend.appendChild(item);
    }
  }

  function select(kind, id) {
    selected = { kind, id };
    for (const node of graphView.querySelectorAll(".node, .edge")) {
      node.classList.toggle("selected", node.classList.contains(kind) && node.getAttribute("data-id") === id);
    }
    showSelection(true);
  }

  let selectionRequest = 0;
  async function showSelection(fresh) {
    const request = ++selectionRequest;
    const { kind, id } = selected;
    if (kind === "node") {
      const node = graph.nodes.find((n) => n.id === id);
      if (!node) return;
      const traces = await searchTraces({ service: id, limit: "10" }).catch(() => null);
      if (request !== selectionRequest) return;
      renderNode(node, traces);
    } else {
      const edge = graph.edges.find((e) => e.id === id);
      if (!edge) return;
      const calls = await edgeCalls(edge).catch(() => null);
      if (request !== selectionRequest) return;
      renderEdge(edge, calls);
    }
    if (fresh) graphDetails.scrollTop = 0;
  }

  function renderNode(node, traces) {
    clear(graphDetails);
    const requests = node.detail__requests || 0;
    const rate = rates.nodes.get(node.id);
    graphDetails.appendChild(el("h2", { id: "details-title" }, node.title || node.id));
    const agentDetails = Object.entries(node).filter(([key]) => key.startsWith("detail__agent_")).map(([key, value]) => [key.slice(8).replace(/_/g, "."), value]);
    graphDetails.appendChild(el("h3", null, "RED"));
    graphDetails.appendChild(definitions([
      ["kind", node.subtitle],
      ["rate", rate === undefined ? "–" : count(rate) + " requests/s"],
      ["requests", count(requests)],
      ["errors", count(node.detail__errors || 0) + " (" + percent(requests ? (node.detail__errors || 0) / requests : 0) + ")"],
      ["duration p50", ms(node.detail__p50_ms)],
      ["duration p95", ms(node.detail__p95_ms)],
      ["duration p99", ms(node.detail__p99_ms)],
    ]));
    graphDetails.appendChild(el("h3", null, "Tokens"));
    graphDetails.appendChild(definitions([
      ["input", count(node.detail__input_tokens || 0)],
      ["output", count(node.detail__output_tokens || 0)],
    ]));
    if (agentDetails.length) {
      graphDetails.appendChild(el("h3", null, "Agent"));
      graphDetails.appendChild(definitions(agentDetails));
    }
    graphDetails.appendChild(el("h3", null, "Recent traces"));
    graphDetails.appendChild(traceList(traces, "No stored traces from this agent (the memory exporter keeps what tail sampling kept)."));
  }

  function traceList(traces, emptyText) {
    if (!traces || !traces.length) return el("p", { class: "hint" }, traces ? emptyText : "Traces cannot be searched: no memory exporter.");
    const list = el("ul", { class: "trace-list" });
    for (const trace of traces) {
      const summary = summarise(trace);
      list.appendChild(el("li", null,
        traceLink(trace.traceID), " ", summary.root ? summary.root.operationName : "", " · ", micros(summary.duration),
        summary.errors ? " · " + summary.errors + " errors" : ""));
    }
    return list;
  }

  // The calls along an edge: spans of the source that reach the target (a child in the target's service,
  // or a model, tool or peer attribute naming it).
  async function edgeCalls(edge) {
    const traces = await searchTraces({ service: edge.source === "user" ? edge.target : edge.source, limit: "20" });
    const calls = [];
    for (const trace of traces) {
      const byID = new Map(trace.spans.map((s) => [s.spanID, s]));
      const service = (span) => (trace.processes[span.processID] || {}).serviceName;
      for (const span of trace.spans) {
        const parentRef = (span.references || []).find((r) => r.refType === "CHILD_OF");
        const parent = parentRef ? byID.get(parentRef.spanID) : null;
        let call = null;
        if (edge.source === "user") {
          if (!parent && service(span) === edge.target) call = span;
        } else if (service(span) === edge.target && parent && service(parent) === edge.source) {
          call = parent;
        } else if (service(span) === edge.source && (span.tags || []).some((t) => String(t.value) === edge.target && /model|tool|peer|server\.address|db\.|messaging|agent/.test(t.key))) {
          call = span;
        }
        if (call && !calls.some((c) => c.span === call)) calls.push({ span: call, trace: trace.traceID });
      }
    }
    return calls.sort((a, b) => b.span.startTime - a.span.startTime);
  }

  function renderEdge(edge, calls) {
    clear(graphDetails);
    graphDetails.appendChild(el("h2", { id: "details-title" }, edge.source + " → " + edge.target));
    const requests = edge.detail__requests || 0;
    const rate = rates.edges.get(edge.id);
    graphDetails.appendChild(definitions([
      ["connection", edge.detail__connection_type],
      ["rate", rate === undefined ? "–" : count(rate) + " calls/s"],
      ["calls", count(requests)],
      ["failed", count(edge.detail__failed || 0) + " (" + percent(requests ? (edge.detail__failed || 0) / requests : 0) + ")"],
      ["p50 / p95 / p99", ms(edge.detail__p50_ms) + " / " + ms(edge.detail__p95_ms) + " / " + ms(edge.detail__p99_ms)],
      ["tokens", edgeTokensText(edge)],
    ]));
    graphDetails.appendChild(el("h3", null, "Calls in stored traces"));
    if (!calls || !calls.length) {
      graphDetails.appendChild(el("p", { class: "hint" }, calls ? "No stored trace holds one of these calls." : "Traces cannot be searched: no memory exporter."));
      return;
    }
    const table = el("table", { class: "list" }, el("thead", null, el("tr", null, el("th", null, "start"), el("th", null, "span"), el("th", null, "duration"), el("th", null, "trace"))));
    const body = el("tbody");
    for (const call of calls.slice(0, 30)) {
      body.appendChild(el("tr", { class: isError(call.span) ? "sev-critical" : "" },
        el("td", null, clock(call.span.startTime / 1000)), el("td", null, call.span.operationName),
        el("td", null, micros(call.span.duration)), el("td", null, traceLink(call.trace))));
    }
    table.appendChild(body);
    graphDetails.appendChild(table);
  }

  // ================================ Incidents ================================
  const incidentRows = document.getElementById("incident-rows");
  const incidentCount = document.getElementById("incident-count");
  let seenAlerts = null;

  async function refreshIncidents(render) {
    const [alerts, incidents] = await Promise.all([
      getJSON("/api/alerts?limit=200").catch((e) => (e.status === 404 ? { alerts: [] } : Promise.reject(e))),
      getJSON("/api/incidents?limit=100").catch((e) => (e.status === 404 ? { incidents: [] } : Promise.reject(e))),
    ]);
    const items = [];
    for (const alert of alerts.alerts || []) {
      items.push({
        at: Number(alert.time_unix_nano || 0) / 1e6 || Date.parse(alert.time), kind: alert.kind || "alert", severity: alert.severity,
        title: alert.rule, agent: alert.agent || alert.service, message: alert.message, trace: alert.trace_id,
      });
    }
    for (const incident of incidents.incidents || []) {
      const first = (incident.alerts || [])[0] || {};
      items.push({
        at: Number(incident.start_unix_nano || 0) / 1e6 || Date.parse(incident.start), kind: "incident", severity: first.severity || "",
        title: "incident " + incident.id + (incident.probable_cause ? " · cause " + incident.probable_cause : ""),
        agent: (incident.agents || []).join(", "), message: (incident.alert_count || 0) + " alerts; " + (first.message || ""),
        trace: first.trace_id,
      });
    }
    items.sort((a, b) => b.at - a.at);
    const total = items.length;
    if (activeTab === "incidents") seenAlerts = total;
    incidentCount.textContent = seenAlerts === null || total <= seenAlerts ? "" : String(total - seenAlerts);
    if (!render) return;
    clear(incidentRows);
    document.getElementById("incidents-empty").hidden = items.length > 0;
    for (const item of items) {
      incidentRows.appendChild(el("tr", { class: "incident", data: { kind: item.kind } },
        el("td", null, when(item.at)), el("td", null, item.kind),
        el("td", { class: "sev-" + (item.severity || "none") }, item.severity || ""),
        el("td", null, item.title || ""), el("td", null, item.agent || ""), el("td", null, item.message || ""),
        el("td", null, item.trace ? traceLink(item.trace) : "")));
    }
  }

  // ================================ Traces ================================
  const serviceSelect = document.getElementById("search-service");
  const operationSelect = document.getElementById("search-operation");
  const searchMessage = document.getElementById("search-message");
  const traceRows = document.getElementById("trace-rows");
  const waterfall = document.getElementById("waterfall");
  let openTrace = null;

  async function searchTraces(params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (Array.isArray(value)) for (const v of value) query.append(key, v);
      else if (value !== "" && value !== undefined) query.set(key, value);
    }
    try {
      return (await getJSON("/api/traces?" + query.toString())).data || [];
    } catch (error) {
      if (error.status === 404) return null; // no memory exporter: Jaeger's query API is not served
      throw error;
    }
  }

  async function refreshServices() {
    let services;
    try {
      services = (await getJSON("/api/services")).data || [];
    } catch (error) {
      if (error.status === 404) { searchMessage.textContent = "No memory exporter is configured: there are no stored traces to search."; return; }
      throw error;
    }
    const current = serviceSelect.value;
    const known = [...serviceSelect.options].map((o) => o.value);
    if (known.length === services.length && known.every((v, i) => v === services[i])) return;
    clear(serviceSelect);
    for (const service of services) serviceSelect.appendChild(el("option", { value: service }, service));
    if (services.includes(current)) serviceSelect.value = current;
    await refreshOperations();
  }

  async function refreshOperations() {
    const current = operationSelect.value;
    clear(operationSelect);
    operationSelect.appendChild(el("option", { value: "" }, "any"));
    if (!serviceSelect.value) return;
    const operations = (await getJSON("/api/services/" + encodeURIComponent(serviceSelect.value) + "/operations")).data || [];
    for (const operation of operations) operationSelect.appendChild(el("option", { value: operation }, operation));
    if (operations.includes(current)) operationSelect.value = current;
  }
  serviceSelect.addEventListener("change", () => refreshOperations().catch(showError));

  function searchParameters() {
    const params = { service: serviceSelect.value, operation: operationSelect.value, limit: "50", tag: [] };
    for (const word of document.getElementById("search-tags").value.trim().split(/\s+/).filter(Boolean)) {
      const mark = word.indexOf("=") >= 0 ? word.indexOf("=") : word.indexOf(":");
      if (mark <= 0) throw new Error("a tag is key=value: " + word);
      params.tag.push(word.slice(0, mark) + ":" + word.slice(mark + 1));
    }
    if (document.getElementById("search-errors").checked) params.tag.push("error:true");
    const minimum = document.getElementById("search-min").value.trim();
    if (minimum) params.minDuration = /^\d+(\.\d+)?$/.test(minimum) ? minimum + "ms" : minimum;
    const range = Number(document.getElementById("search-range").value);
    if (range > 0) {
      const now = Date.now() * 1000;
      params.start = String(now - range * 1e6);
      params.end = String(now + 60e6);
    }
    return params;
  }

  async function runSearch() {
    searchMessage.textContent = "";
    if (!serviceSelect.value) await refreshServices();
    const traces = await searchTraces(searchParameters());
    clear(traceRows);
    if (traces === null) { searchMessage.textContent = "No memory exporter is configured: there are no stored traces to search."; return; }
    if (!traces.length) searchMessage.textContent = "No stored trace matches.";
    for (const trace of traces) {
      const summary = summarise(trace);
      const row = el("tr", { class: "clickable trace-row", data: { traceId: trace.traceID }, on: { click: () => openTraceByID(trace.traceID) } },
        el("td", null, when(summary.start / 1000)),
        el("td", null, summary.root ? summary.root.operationName : ""),
        el("td", null, summary.services.join(", ")),
        el("td", null, String(trace.spans.length)),
        el("td", null, micros(summary.duration)),
        el("td", { class: summary.errors ? "sev-critical" : "" }, String(summary.errors)));
      if (trace.traceID === openTrace) row.classList.add("selected");
      traceRows.appendChild(row);
    }
  }
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch().catch(showError);
  });

  function isError(span) {
    return (span.tags || []).some((t) => (t.key === "error" && (t.value === true || t.value === "true")) || (t.key === "otel.status_code" && t.value === "ERROR"));
  }

  function summarise(trace) {
    const spans = trace.spans || [];
    const ids = new Set(spans.map((s) => s.spanID));
    const start = Math.min(...spans.map((s) => s.startTime));
    const end = Math.max(...spans.map((s) => s.startTime + s.duration));
    const root = spans.filter((s) => !(s.references || []).some((r) => r.refType === "CHILD_OF" && ids.has(r.spanID)))
      .sort((a, b) => a.startTime - b.startTime)[0];
    const services = [...new Set(spans.map((s) => (trace.processes[s.processID] || {}).serviceName).filter(Boolean))];
    return { start, duration: spans.length ? end - start : 0, root, services, errors: spans.filter(isError).length };
  }

  function traceLink(traceID) {
    return el("a", { class: "trace-link", href: "#traces", data: { traceId: traceID }, on: {
      click: (event) => {
        event.preventDefault();
        history.replaceState(null, "", location.pathname + location.search + "#traces");
        showTab("traces");
        openTraceByID(traceID);
      },
    } }, String(traceID).slice(0, 16));
  }

  async function openTraceByID(traceID) {
    openTrace = traceID;
    for (const row of traceRows.querySelectorAll("tr")) row.classList.toggle("selected", row.dataset.traceId === traceID);
    clear(waterfall);
    waterfall.appendChild(el("p", { class: "hint" }, "loading trace " + traceID + "…"));
    let body;
    try {
      body = await getJSON("/api/traces/" + encodeURIComponent(traceID));
    } catch (error) {
      clear(waterfall);
      waterfall.appendChild(el("h2", null, "Trace " + traceID));
      waterfall.appendChild(el("p", { class: "message" }, error.status === 404
        ? "This trace is not stored: tail sampling dropped it, the memory exporter evicted it, or there is no memory exporter."
        : error.message));
      return;
    }
    if (openTrace === traceID) renderWaterfall(body.data[0]);
  }

  // What a span talks to: the model, tool or agent named by its attributes, or the agents of its children.
  function peersOf(span, trace, children) {
    const tag = (key) => { const t = (span.tags || []).find((x) => x.key === key); return t ? String(t.value) : ""; };
    const peers = [];
    const model = tag("gen_ai.request.model") || tag("gen_ai.response.model");
    if (model) peers.push("model " + model);
    const tool = tag("gen_ai.tool.name") || tag("tool.name");
    if (tool) peers.push("tool " + tool);
    const own = (trace.processes[span.processID] || {}).serviceName;
    const agents = new Set();
    const peer = tag("peer.service") || tag("server.address");
    if (peer) agents.add(peer);
    for (const child of children.get(span.spanID) || []) {
      const service = (trace.processes[child.processID] || {}).serviceName;
      if (service && service !== own) agents.add(service);
    }
    for (const agent of agents) peers.push("agent " + agent);
    const db = tag("db.system");
    if (db) peers.push("database " + db);
    return peers;
  }

  function renderWaterfall(trace) {
    clear(waterfall);
    const summary = summarise(trace);
    const ids = new Set(trace.spans.map((s) => s.spanID));
    const parentOf = (span) => { const r = (span.references || []).find((x) => x.refType === "CHILD_OF" && ids.has(x.spanID)); return r ? r.spanID : null; };
    const children = new Map();
    for (const span of trace.spans) {
      const parent = parentOf(span);
      if (parent) (children.get(parent) || children.set(parent, []).get(parent)).push(span);
    }
    const byID = new Map(trace.spans.map((s) => [s.spanID, s]));
    const depth = (span) => { let d = 0, p = parentOf(span); const seen = new Set(); while (p && !seen.has(p) && d < 64) { seen.add(p); d++; p = parentOf(byID.get(p)); } return d; };
    // spans in start order; a parent before a child that starts at the same microsecond
    const spans = [...trace.spans].sort((a, b) => a.startTime - b.startTime || depth(a) - depth(b));
    waterfall.appendChild(el("h2", { id: "waterfall-title" }, "Trace " + trace.traceID));
    waterfall.appendChild(el("p", { class: "hint" }, trace.spans.length + " spans · " + micros(summary.duration) + " · " + summary.services.join(", ")));
    const total = Math.max(summary.duration, 1);
    for (const span of spans) {
      const service = (trace.processes[span.processID] || {}).serviceName || "";
      const peers = peersOf(span, trace, children);
      const bar = el("div", { class: "span-bar" + (isError(span) ? " error" : "") });
      bar.style.left = ((span.startTime - summary.start) / total * 100).toFixed(3) + "%";
      bar.style.width = Math.max(span.duration / total * 100, 0.2).toFixed(3) + "%";
      const label = el("div", { class: "span-label" }, el("span", { class: "svc" }, service), el("span", { class: "op" }, span.operationName),
        peers.length ? el("span", { class: "peer" }, "→ " + peers.join(", ")) : null);
      label.style.paddingLeft = (depth(span) * 14 + 4) + "px";
      const row = el("div", { class: "span-row", data: { spanId: span.spanID } }, label, el("div", { class: "span-track", title: micros(span.duration) }, bar));
      let details = null;
      row.addEventListener("click", () => {
        if (details) { details.remove(); details = null; row.classList.remove("selected"); return; }
        details = spanDetails(span, trace, service, peers);
        row.classList.add("selected");
        row.after(details);
      });
      waterfall.appendChild(row);
    }
  }

  function tagValue(tag) {
    return typeof tag.value === "object" ? JSON.stringify(tag.value) : String(tag.value);
  }

  function spanDetails(span, trace, service, peers) {
    const box = el("div", { class: "span-details" });
    box.appendChild(definitions([
      ["agent (service)", service], ["span id", span.spanID], ["start", when(span.startTime / 1000)],
      ["duration", micros(span.duration)], ["talks to", peers.join(", ")],
    ]));
    box.appendChild(el("h3", null, "Attributes"));
    box.appendChild(definitions((span.tags || []).map((t) => [t.key, tagValue(t)])));
    const process = trace.processes[span.processID];
    if (process && process.tags && process.tags.length) {
      box.appendChild(el("h3", null, "Resource"));
      box.appendChild(definitions(process.tags.map((t) => [t.key, tagValue(t)])));
    }
    if (span.logs && span.logs.length) {
      box.appendChild(el("h3", null, "Events"));
      for (const log of span.logs) {
        box.appendChild(el("div", { class: "event" }, clock(log.timestamp / 1000) + " (+" + micros(log.timestamp - span.startTime) + ")"));
        box.appendChild(definitions((log.fields || []).map((f) => [f.key, tagValue(f)])));
      }
    }
    return box;
  }

  // ================================ Collector ================================
  let previousMetrics = null;

  // Prometheus text format 0.0.4: `name{label="value",…} value`, comments skipped.
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!match) continue;
      const labels = {};
      const labelText = match[3] || "";
      const labelPattern = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let m;
      while ((m = labelPattern.exec(labelText))) labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      samples.push({ name: match[1], labels, key: match[1] + "{" + labelText + "}", value: Number(match[4]) });
    }
    return samples;
  }

  async function refreshCollector() {
    // the collector's own agenttrace_* families: /metrics without the service graph's per-edge series
    const text = await getJSON("/api/self-metrics");
    const samples = parseMetrics(text);
    const now = performance.now();
    const values = new Map(samples.map((s) => [s.key, s.value]));
    const seconds = previousMetrics ? (now - previousMetrics.at) / 1000 : 0;
    // a metric the collector does not have (no such component) shows as "–", not as 0
    const rateOf = (filter) => {
      const matching = samples.filter(filter);
      if (!previousMetrics || seconds <= 0 || !matching.length) return NaN;
      let sum = 0;
      for (const s of matching) sum += Math.max(0, s.value - (previousMetrics.values.get(s.key) || 0));
      return sum / seconds;
    };
    const total = (filter) => { const matching = samples.filter(filter); return matching.length ? matching.reduce((sum, s) => sum + s.value, 0) : NaN; };
    const named = (name) => (s) => s.name === name;
    const queueSize = total(named("agenttrace_pipeline_queue_size"));
    const queueCapacity = total(named("agenttrace_pipeline_queue_capacity"));
    const decided = samples.filter(named("agenttrace_tail_sampling_global_count_traces_sampled_total"));
    const kept = decided.filter((s) => s.labels.sampled === "true").reduce((sum, s) => sum + s.value, 0);
    const decidedTotal = decided.reduce((sum, s) => sum + s.value, 0);
    const cards = document.getElementById("collector-cards");
    clear(cards);
    const card = (id, label, value) => cards.appendChild(el("div", { class: "card", id }, el("div", { class: "value" }, value), el("div", { class: "label" }, label)));
    card("stat-accepted", "accepted spans/s", count(rateOf(named("agenttrace_receiver_accepted_spans_total"))));
    card("stat-refused", "refused spans/s", count(rateOf(named("agenttrace_receiver_refused_spans_total"))));
    card("stat-accepted-total", "accepted spans (total)", count(total(named("agenttrace_receiver_accepted_spans_total"))));
    card("stat-queue", "pipeline queue fill", queueCapacity ? percent(queueSize / queueCapacity) + " (" + count(queueSize) + " of " + count(queueCapacity) + ")" : "–");
    card("stat-kept", "tail sampling: traces kept", decided.length ? (decidedTotal ? percent(kept / decidedTotal) : "–") + " of " + count(decidedTotal) : "no tail_sampling");
    card("stat-stored", "traces stored (memory)", samples.some(named("agenttrace_memory_traces")) ? count(total(named("agenttrace_memory_traces"))) : "no memory exporter");
    const resident = total(named("agenttrace_process_resident_memory_bytes"));
    if (!isNaN(resident)) card("stat-memory", "resident memory", count(resident / 1048576) + " MiB");

    const exporters = new Map();
    for (const s of samples) {
      if (!s.labels.exporter || !(s.name.startsWith("agenttrace_exporter_") || s.name.startsWith("agenttrace_memory_"))) continue;
      exporters.set(s.labels.exporter, true);
    }
    const rows = document.getElementById("exporter-rows");
    clear(rows);
    for (const name of [...exporters.keys()].sort()) {
      const mine = (metric) => (s) => s.name === metric && s.labels.exporter === name;
      const sent = rateOf(mine("agenttrace_exporter_sent_spans_total"));
      const failed = rateOf(mine("agenttrace_exporter_send_failed_spans_total"));
      const size = total(mine("agenttrace_exporter_queue_size"));
      const capacity = total(mine("agenttrace_exporter_queue_capacity"));
      const failedEver = total(mine("agenttrace_exporter_send_failed_spans_total")) || 0;
      const healthy = !(failed > 0) && !(capacity && size >= capacity);
      rows.appendChild(el("tr", { class: "exporter", data: { exporter: name } },
        el("td", null, name),
        el("td", { class: healthy ? "health-ok" : "health-bad" }, healthy ? "healthy" : "failing", failedEver && healthy ? " (" + count(failedEver) + " failed before)" : ""),
        el("td", null, count(sent)), el("td", null, count(failed)),
        el("td", null, capacity ? count(size) + " / " + count(capacity) : "–")));
    }
    previousMetrics = { at: now, values };
  }

  // ================================ refresh loop ================================
  function showError(error) { setStatus(error.message || String(error), true); }

  let refreshing = false;
  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      if (activeTab === "agents") await refreshAgents();
      await refreshIncidents(activeTab === "incidents");
      if (activeTab === "traces") await refreshServices();
      if (activeTab === "collector") await refreshCollector();
      setStatus("updated " + clock(Date.now()) + " · every " + REFRESH_MS / 1000 + " s");
    } catch (error) {
      showError(error);
    } finally {
      refreshing = false;
    }
  }

  function fromHash() {
    const hash = location.hash.replace(/^#/, "");
    const [tab, value] = hash.split("=");
    if (tab === "trace" && value) {
      showTab("traces");
      openTraceByID(decodeURIComponent(value));
    } else {
      showTab(tab || "agents");
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  setInterval(refresh, REFRESH_MS);
})();
