// The Cairn console: a page over the admin API, nothing else. Every value shown comes from the
// API and is put in the page as text (journal entries and state are written by components, so
// they are never parsed as HTML). The token stays in this tab's sessionStorage.
"use strict";

const TOKEN_KEY = "cairn-admin-token";
const REFRESH_MS = 2000;
let refreshTimer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "onclick" || name === "onchange" || name === "onsubmit") node[name] = value;
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "";
}

function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

async function api(method, path, body, contentType) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) };
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined || contentType ? body : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => null);
  if (resp.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    route();
    throw new Error("the admin token was refused");
  }
  if (!resp.ok) throw new Error((data && data.message) || resp.status + " " + resp.statusText);
  return data;
}

// Replaces `node`'s children with `children` (nested lists flattened, null left out).
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return node;
}

function page(title, ...children) {
  return fill(document.getElementById("main"), el("h1", {}, title), ...children);
}

function failed(error) {
  document.getElementById("main").append(el("p", { class: "error", role: "alert" }, String(error.message || error)));
}

function status(value) {
  return el("span", { class: "status " + value, "data-status": value }, value);
}

// ---- invocations

function invocationsPage(params) {
  const field = (name, label, options) =>
    el("label", {}, label, options
      ? el("select", { name }, options.map((o) => el("option", { value: o, selected: params.get(name) === o }, o || "any")))
      : el("input", { name, value: params.get(name) || "", size: name === "key" ? 18 : 14 }));
  const form = el("form", { class: "filters", id: "filters" },
    field("status", "status", ["", "running", "paused", "succeeded", "failed"]),
    field("service", "service"),
    field("key", "key"),
    field("since", "created since (local time)"),
    el("label", {}, "live", el("input", { type: "checkbox", id: "live", checked: params.get("live") !== "off" })),
    el("button", { type: "submit" }, "Filter"));
  form.onsubmit = (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (value) next.set(name, value);
    if (!document.getElementById("live").checked) next.set("live", "off");
    location.hash = "#/invocations?" + next;
  };
  const table = el("table", { id: "invocations" });
  page("Invocations", form, table);
  const load = async () => {
    const query = new URLSearchParams({ limit: "100" });
    for (const name of ["status", "service", "key"]) if (params.get(name)) query.set(name, params.get(name));
    if (params.get("since")) {
      const since = Date.parse(params.get("since"));
      if (!Number.isNaN(since)) query.set("since", String(since));
    }
    const { invocations } = await api("GET", "/invocations?" + query);
    fill(table,
      el("tr", {}, ["invocation", "target", "status", "attempt", "created", "failure"].map((h) => el("th", {}, h))),
      invocations.map((inv) => el("tr", { "data-id": inv.id },
        el("td", {}, el("a", { href: "#/invocation/" + encodeURIComponent(inv.id) }, inv.id)),
        el("td", {}, inv.service + (inv.key !== null ? "/" + inv.key : "") + "/" + inv.handler),
        el("td", {}, status(inv.status)),
        el("td", {}, inv.attempt),
        el("td", {}, when(inv.createdAt)),
        el("td", {}, inv.failure ? inv.failure.kind + ": " + inv.failure.message : ""))));
  };
  load().catch(failed);
  if (params.get("live") !== "off") refreshTimer = setInterval(() => load().catch(failed), REFRESH_MS);
}

// ---- one invocation

const ACTIONS = {
  cancel: (inv) => inv.status === "running" || inv.status === "paused",
  kill: (inv) => inv.status === "running" || inv.status === "paused",
  pause: (inv) => inv.status === "running",
  resume: (inv) => inv.status === "paused",
  retry: (inv) => inv.status === "running" && inv.retryAt !== null,
};

function timeline(inv) {
  const entries = inv.journal;
  if (entries.length === 0) return el("p", {}, "No journal entries yet.");
  const start = entries[0].startedAt;
  const end = Math.max(...entries.map((e) => e.startedAt + e.durationUs / 1000), start + 1);
  const span = end - start;
  const divergedAt = inv.failure && inv.failure.divergence ? inv.failure.divergence.entry : null;
  return el("div", { class: "timeline", id: "timeline" }, entries.map((entry) => {
    const left = ((entry.startedAt - start) / span) * 100;
    const width = Math.max((entry.durationUs / 1000 / span) * 100, 0.3);
    const row = el("div", {
      class: ["entry", "kind-" + entry.kind, entry.soft ? "soft" : "", entry.index === divergedAt ? "diverged" : ""].join(" "),
      "data-kind": entry.kind,
      title: entry.soft ? "a transient failure, made again by the next attempt" : null,
    },
    el("span", {}, "#" + entry.index),
    el("span", {}, entry.kind),
    el("span", {}, entry.name),
    track(left, width),
    el("div", { class: "details" },
      el("div", {}, `started ${when(entry.startedAt)}, took ${(entry.durationUs / 1000).toFixed(2)} ms`),
      entry.detail && entry.detail.args !== undefined ? [el("strong", {}, "arguments"), el("pre", {}, json(entry.detail.args))] : null,
      exchanges(entry.detail && entry.detail.effect),
      el("strong", {}, "result"), el("pre", {}, json(entry.result))));
    row.onclick = () => row.classList.toggle("open");
    return row;
  }));
}

// A bar placed by its start and scaled by its duration (set through the CSSOM: the page's
// content security policy allows no inline styles).
function track(left, width) {
  const bar = el("span", { class: "bar" });
  bar.style.left = left + "%";
  bar.style.width = width + "%";
  return el("span", { class: "track" }, bar);
}

function exchanges(effect) {
  if (!effect || !Array.isArray(effect.exchanges)) return effect ? [el("strong", {}, "effect"), el("pre", {}, json(effect))] : null;
  return effect.exchanges.map((x, i) => el("div", { class: "exchange" },
    el("strong", {}, `HTTP exchange ${i + 1}: ${x.request.method} ${x.request.url}`),
    el("pre", {}, (x.request.headers || []).map(([k, v]) => k + ": " + v).join("\n") + "\n\n" + (x.request.body || "")),
    x.response ? el("pre", {}, "HTTP " + x.response.status + "\n\n" + (x.response.body || "")) : el("em", {}, "no response")));
}

function invocationPage(id) {
  const load = async () => {
    const inv = await api("GET", "/invocations/" + encodeURIComponent(id));
    const actions = el("div", { class: "actions" }, Object.entries(ACTIONS).map(([action, allowed]) => {
      const button = el("button", { type: "button", id: "action-" + action, disabled: !allowed(inv) }, action);
      button.onclick = async () => {
        if (action === "kill" && !confirm("Kill " + id + "? It stops at once, without compensation.")) return;
        try {
          await api("POST", `/invocations/${encodeURIComponent(id)}/${action}`);
          await load();
        } catch (error) {
          failed(error);
        }
      };
      return button;
    }));
    const facts = el("table", { class: "card facts" },
      [["target", `${inv.service}${inv.key !== null ? "/" + inv.key : ""}/${inv.handler}`],
        ["status", status(inv.status)],
        ["attempt", inv.attempt],
        ["deployment", el("a", { href: "#/deployments" }, inv.deploymentId)],
        ["created", when(inv.createdAt)],
        ["sleeping until", when(inv.sleepingUntil)],
        ["retry at", when(inv.retryAt)],
        ["cancelled at", when(inv.cancelledAt)],
        ["state", inv.key !== null ? el("a", { href: `#/state/${encodeURIComponent(inv.service)}/${encodeURIComponent(inv.key)}` }, "this key's state") : ""],
      ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    page("Invocation " + id, actions,
      inv.failure ? el("div", { class: "card failure", id: "failure" }, el("strong", {}, inv.failure.kind + " " + inv.failure.code + ": "), inv.failure.message,
        inv.failure.divergence ? el("pre", {}, json(inv.failure.divergence)) : null) : null,
      facts,
      el("h2", {}, `Journal (${inv.journal.length} entries; click one for its details)`),
      timeline(inv),
      el("details", {}, el("summary", {}, "Input"), el("pre", {}, json(inv.input))),
      inv.output !== null ? el("details", {}, el("summary", {}, "Output"), el("pre", {}, json(inv.output))) : null);
    return inv;
  };
  load().then((inv) => {
    if (inv.status === "running" || inv.status === "paused") {
      refreshTimer = setInterval(() => load().catch(failed), REFRESH_MS);
    }
  }).catch(failed);
}

// ---- state

function statePage(service, key) {
  const form = el("form", { class: "filters" },
    el("label", {}, "service", el("input", { name: "service", value: service || "OrderOrchestrator" })),
    el("label", {}, "key", el("input", { name: "key", value: key || "" })),
    el("button", { type: "submit" }, "Show"));
  form.onsubmit = (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.hash = `#/state/${encodeURIComponent(data.get("service"))}/${encodeURIComponent(data.get("key"))}`;
  };
  page("State", form);
  if (!service || !key) return;
  api("GET", `/state/${encodeURIComponent(service)}/${encodeURIComponent(key)}`).then((view) => {
    const main = document.getElementById("main");
    fill(main, ...main.childNodes,
      el("table", { id: "state" }, el("tr", {}, el("th", {}, "name"), el("th", {}, "value")),
        Object.entries(view.state).map(([name, value]) => el("tr", {}, el("td", {}, name), el("td", {}, el("pre", {}, json(value)))))),
      view.truncated ? el("p", {}, "More entries than shown.") : null,
      el("h2", {}, "Operator edits"),
      el("table", {}, el("tr", {}, ["at", "name", "before", "after", "reason"].map((h) => el("th", {}, h))),
        view.audit.map((a) => el("tr", {}, el("td", {}, when(a.at)), el("td", {}, a.name), el("td", {}, json(a.before)), el("td", {}, json(a.after)), el("td", {}, a.reason)))));
  }).catch(failed);
}

// ---- deployments

function deploymentsPage() {
  const upload = el("form", { class: "filters card", id: "upload" },
    el("label", {}, "component (.wasm)", el("input", { type: "file", name: "component", accept: ".wasm", required: true })),
    el("label", {}, "memory MiB", el("input", { name: "memoryMib", size: 6 })),
    el("label", {}, "CPU ms", el("input", { name: "cpuMs", size: 6 })),
    el("button", { type: "submit" }, "Deploy"));
  upload.onsubmit = async (event) => {
    event.preventDefault();
    const data = new FormData(upload);
    const query = new URLSearchParams();
    for (const name of ["memoryMib", "cpuMs"]) if (data.get(name)) query.set(name, data.get(name));
    try {
      const bytes = await data.get("component").arrayBuffer();
      await api("POST", "/deployments?" + query, bytes, "application/wasm");
      deploymentsPage();
    } catch (error) {
      failed(error);
    }
  };
  const table = el("table", { id: "deployments" });
  page("Deployments", upload, table);
  api("GET", "/deployments").then(async ({ deployments }) => {
    const rows = [];
    for (const d of deployments) {
      const one = await api("GET", "/deployments/" + encodeURIComponent(d.id));
      const limits = d.effectiveLimits;
      rows.push(el("tr", {},
        el("td", {}, el("code", {}, d.id.slice(0, 16))),
        el("td", {}, d.kind),
        el("td", {}, d.name),
        el("td", {}, d.active ? "active" : ""),
        el("td", {}, `${limits.memoryMib} MiB, ${limits.cpuMs} ms CPU, ${limits.wallMs} ms wall`),
        el("td", {}, d.providerSettings ? el("pre", {}, json(d.providerSettings)) : "host defaults"),
        el("td", {}, one.runningInvocations.map((inv) => el("div", {}, el("a", { href: "#/invocation/" + encodeURIComponent(inv.id || inv) }, inv.id || inv))))));
    }
    fill(table,
      el("tr", {}, ["id", "kind", "name", "", "limits", "settings", "pinned running invocations"].map((h) => el("th", {}, h))),
      rows);
  }).catch(failed);
}

// ---- routing

function route() {
  clearInterval(refreshTimer);
  refreshTimer = null;
  const login = document.getElementById("login");
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    if (!login) location.reload();
    return;
  }
  const [path, query] = location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.id === "nav-" + (parts[0] === "invocation" ? "invocations" : parts[0]));
  switch (parts[0]) {
    case "invocation": return invocationPage(parts[1]);
    case "state": return statePage(parts[1], parts[2]);
    case "deployments": return deploymentsPage();
    default: return invocationsPage(new URLSearchParams(query || ""));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").onsubmit = async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    try {
      await api("GET", "/invocations?limit=1");
      route();
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("login-error").textContent = String(error.message || error);
    }
  };
  document.getElementById("logout").onclick = () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  };
  window.addEventListener("hashchange", route);
  if (sessionStorage.getItem(TOKEN_KEY)) route();
});
