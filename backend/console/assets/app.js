// keyalert web console. Plain JavaScript, no build step: every page reads
// and changes state through the JSON API under /api/v1. The session cookie is
// HttpOnly; the CSRF token lives only in this closure (never in storage).
(function () {
  "use strict";

  var csrf = "";
  var skew = 0; // server clock minus browser clock, ms
  var pollTimer = 0;
  var POLL_MS = 1000; // a new alert shows within 2 s
  var charts = [];

  function now() { return Date.now() + skew; }

  // ---- DOM helpers (no innerHTML: text is always text) ----
  function h(tag, attrs) {
    var el = tag.indexOf("svg:") === 0
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k.indexOf("on") === 0) el.addEventListener(k.slice(2), v);
        else if (k === "value") el.value = v;
        else if (k === "checked") el.checked = !!v;
        else el.setAttribute(k, v === true ? "" : String(v));
      });
    }
    add.apply(null, [el].concat(Array.prototype.slice.call(arguments, 2)));
    return el;
  }
  // add appends each further argument (a node, text, or an array of them).
  function add(el) {
    for (var i = 1; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) { c.forEach(function (x) { add(el, x); }); continue; }
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function $(id) { return document.getElementById(id); }
  function say(msg) { $("status").textContent = msg; if (msg) setTimeout(function () { if ($("status").textContent === msg) $("status").textContent = ""; }, 5000); }

  // ---- API ----
  function api(method, path, body) {
    var opt = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    if (method !== "GET" && csrf) opt.headers["X-CSRF-Token"] = csrf;
    return fetch("/api/v1" + path, opt).then(function (r) {
      if (r.status === 204) return { status: 204, data: null };
      return r.text().then(function (t) {
        var d = null;
        try { d = t ? JSON.parse(t) : null; } catch (e) { d = { error: t }; }
        if (r.status === 401 && path !== "/session") { signedOut(); }
        return { status: r.status, data: d };
      });
    });
  }
  function must(res) {
    if (res.status >= 400) throw new Error((res.data && res.data.error) || ("HTTP " + res.status));
    return res.data;
  }

  // ---- formatting ----
  function ago(t) {
    if (!t) return "";
    var s = Math.max(0, Math.round((now() - Date.parse(t)) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function when(t) { return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
  function sev(s) { return h("span", { "class": "sev sev-" + s }, s); }
  function state(s) { return h("span", { "class": "state-" + s }, s); }
  function kwQuery(k, match, ic) { return "keyword=" + encodeURIComponent(k) + "&match=" + encodeURIComponent(match || "substring") + (ic ? "&ignore_case=true" : ""); }
  function iso(ms) { return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z"); }
  function cond(c) {
    if (!c) return "";
    if (c.type === "threshold") return "≥ " + c.count + " in " + c.window;
    if (c.type === "absence") return "< " + (c.count || 1) + " in " + c.window;
    if (c.type === "spike") return "× " + c.factor + " (min " + c.min_count + ") in " + c.window + (c.baseline ? " vs " + c.baseline : "");
    return c.type;
  }
  function table(cols, rows, empty) {
    if (!rows.length) return h("p", { "class": "muted" }, empty);
    return h("div", { "class": "scroll" }, h("table", null,
      h("thead", null, h("tr", null, cols.map(function (c) { return h("th", { scope: "col", "class": c.num ? "num" : null }, c.t); }))),
      h("tbody", null, rows.map(function (r) {
        return h("tr", null, r.map(function (cell, i) { return h("td", { "class": cols[i].num ? "num" : null }, cell); }));
      }))));
  }

  // ---- charts ----
  function chartColors() {
    var cs = getComputedStyle(document.documentElement);
    return { fg: cs.getPropertyValue("--fg").trim(), line: cs.getPropertyValue("--line").trim(),
      accent: cs.getPropertyValue("--accent").trim(), crit: cs.getPropertyValue("--crit").trim() };
  }
  var PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0891b2", "#a16207", "#be185d", "#4d7c0f", "#475569"];
  // drawChart draws per-minute series: xs in seconds, ys one array per series.
  function drawChart(el, label, xs, series, threshold) {
    var c = chartColors();
    var width = Math.max(280, el.clientWidth || 600);
    var axis = { stroke: c.fg, grid: { stroke: c.line, width: 1 }, ticks: { stroke: c.line } };
    var opts = {
      width: width, height: 260, title: label,
      scales: { x: { time: true } },
      axes: [axis, Object.assign({}, axis, { size: 56 })],
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, points: { show: false } };
      })),
    };
    var data = [xs].concat(series.map(function (s) { return s.ys; }));
    if (threshold !== undefined && threshold !== null) {
      opts.series.push({ label: "threshold " + threshold, stroke: c.crit, dash: [6, 4], width: 1.5, points: { show: false } });
      data.push(xs.map(function () { return threshold; }));
    }
    var t0 = performance.now();
    var u = new uPlot(opts, data, el);
    // Measured up to the next frame, by which uPlot has drawn its canvas:
    // data-draw-ms is the chart's own cost, data-drawn-at the time since
    // the page's navigation began (bench/console.md).
    requestAnimationFrame(function () {
      var t1 = performance.now();
      el.setAttribute("data-draw-ms", (t1 - t0).toFixed(1));
      el.setAttribute("data-drawn-at", t1.toFixed(0));
    });
    el.setAttribute("data-points", String(xs.length));
    // The first series' non-zero minutes, for tests and anyone reading the
    // DOM: [[unix seconds, count], …].
    var nz = [];
    if (series.length) series[0].ys.forEach(function (y, i) { if (y) nz.push([xs[i], y]); });
    el.setAttribute("data-nonzero", JSON.stringify(nz));
    // Every series' non-zero minutes by its label: {label: [[s, count], …]}.
    var all = {};
    if (series.length > 1) series.forEach(function (s) { all[s.label] = []; s.ys.forEach(function (y, i) { if (y) all[s.label].push([xs[i], y]); }); });
    el.setAttribute("data-series", JSON.stringify(all));
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", label + ": " + xs.length + " minutes");
    charts.push(u);
    return u;
  }
  // minutes fills the gaps of sparse {minute, count} points with zeros.
  function minutes(fromS, toS, byMinute) {
    var xs = [], ys = [];
    for (var t = fromS; t < toS; t += 60) { xs.push(t); ys.push(byMinute[t] || 0); }
    return { xs: xs, ys: ys };
  }
  function pointsByMinute(points) {
    var m = {};
    (points || []).forEach(function (p) { m[Math.floor(Date.parse(p.minute) / 1000)] = p.count; });
    return m;
  }
  function spark(ys) {
    var max = Math.max.apply(null, ys.concat([1])), n = ys.length;
    var pts = ys.map(function (y, i) { return (n > 1 ? (i * 120 / (n - 1)) : 0).toFixed(1) + "," + (27 - y * 26 / max).toFixed(1); }).join(" ");
    return h("svg:svg", { "class": "spark", viewBox: "0 0 120 28", role: "img", "aria-label": "per minute, peak " + max },
      h("svg:polyline", { points: pts }));
  }

  // ---- routing ----
  var routes = [
    [/^#?\/?$/, overview],
    [/^#\/series(?:\?(.*))?$/, series],
    [/^#\/alerts\/([^?]+)$/, alertDetail],
    [/^#\/rules\/new$/, function () { ruleForm(null); }],
    [/^#\/rules\/([^?]+)$/, function (id) { ruleForm(decodeURIComponent(id)); }],
    [/^#\/rules$/, rulesList],
    [/^#\/silences\/new(?:\?(.*))?$/, silenceForm],
    [/^#\/silences$/, silences],
    [/^#\/outbox$/, outbox],
  ];
  function stopPolling() { clearTimeout(pollTimer); pollTimer = 0; }
  function destroyCharts() { charts.forEach(function (u) { u.destroy(); }); charts = []; }
  // page replaces main's content, focuses it for screen readers and
  // keyboards, and marks the nav link.
  function page(title) {
    stopPolling(); destroyCharts();
    var m = $("main");
    m.textContent = "";
    document.title = title + " · keyalert";
    var hash = location.hash || "#/";
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      var href = a.getAttribute("href");
      var cur = href === "#/" ? (hash === "#/" || hash === "#") : hash.indexOf(href) === 0;
      if (cur) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    add(m, h("h1", null, title));
    return m;
  }
  function route() {
    if (!signedIn) return;
    var hash = location.hash || "#/";
    for (var i = 0; i < routes.length; i++) {
      var mt = routes[i][0].exec(hash);
      if (mt) { routes[i][1](mt[1]); return; }
    }
    page("Not found");
  }
  // poll re-runs fn every POLL_MS while the page is shown; fn redraws only
  // what changed (so focus and scroll stay put).
  function poll(fn) {
    var mine = location.hash;
    function tick() {
      if (location.hash !== mine) return;
      Promise.resolve().then(fn).catch(function (e) { say(e.message); }).then(function () {
        if (location.hash === mine) pollTimer = setTimeout(tick, POLL_MS);
      });
    }
    tick();
  }
  // same reports whether data equals what el last showed, and remembers it.
  function same(el, data) {
    var s = JSON.stringify(data);
    if (el.dataset.last === s) return true;
    el.dataset.last = s;
    return false;
  }
  function params(q) {
    var o = {};
    (q || "").split("&").forEach(function (kv) { if (!kv) return; var p = kv.split("="); o[decodeURIComponent(p[0])] = decodeURIComponent((p[1] || "").replace(/\+/g, " ")); });
    return o;
  }

  // ---- sign-in ----
  var signedIn = false;
  function signedOut() {
    signedIn = false; csrf = ""; stopPolling(); destroyCharts();
    $("nav").hidden = true;
    var m = $("main");
    m.textContent = "";
    document.title = "Sign in · keyalert";
    var err = h("p", { id: "token-error", "class": "ferr", role: "alert" });
    var input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true, "aria-describedby": "token-error" });
    // method=post: should the form ever be sent natively, the token stays
    // out of the URL.
    add(m, h("form", { "class": "stack signin panel", id: "signin", method: "post", action: "/api/v1/session", onsubmit: function (ev) {
      ev.preventDefault();
      err.textContent = "";
      api("POST", "/session", { token: input.value }).then(function (r) {
        input.value = "";
        if (r.status !== 200) { err.textContent = (r.data && r.data.fields && r.data.fields[0] && r.data.fields[0].message) || (r.data && r.data.error) || "sign-in failed"; input.setAttribute("aria-invalid", "true"); input.focus(); return; }
        csrf = r.data.csrf_token;
        start();
      });
    } },
      h("h1", null, "Sign in"),
      h("div", { "class": "field" }, h("label", { "for": "token" }, "API token"), input, err),
      h("p", { "class": "muted" }, "One of keyalertd's KEYALERT_API_TOKENS. The browser then keeps only a session cookie."),
      h("div", null, h("button", { type: "submit", id: "signin-btn" }, "Sign in"))));
    input.focus();
  }
  function start() {
    return api("GET", "/session").then(function (r) {
      if (r.status !== 200) { signedOut(); return; }
      if (r.data.csrf_token) csrf = r.data.csrf_token;
      if (r.data.now) skew = Date.parse(r.data.now) - Date.now();
      signedIn = true;
      $("nav").hidden = false;
      route();
    });
  }
  function signOut() {
    api("DELETE", "/session").then(function () { signedOut(); });
  }

  // ---- overview ----
  function overview() {
    var m = page("Overview");
    var alertsBox = h("section", { "class": "panel", "aria-labelledby": "h-alerts" }, h("h2", { id: "h-alerts" }, "Alerts"), h("div", { id: "alerts" }));
    var busyBox = h("section", { "class": "panel", "aria-labelledby": "h-busy" }, h("h2", { id: "h-busy" }, "Busiest series, last hour"), h("div", { id: "busy" }, h("p", { "class": "muted" }, "Loading…")));
    var ingestBox = h("section", { "class": "panel", "aria-labelledby": "h-ingest" }, h("h2", { id: "h-ingest" }, "Ingest health"), h("div", { id: "ingest" }));
    add(m, alertsBox, h("div", { "class": "grid" }, busyBox, ingestBox));
    // Alerts every poll (a new one shows within 2 s); ingest health, which
    // reads the newest stream entries, every 5 s; the busiest series every 15 s.
    var lastBusy = 0, lastIngest = 0;
    poll(function () {
      var jobs = [api("GET", "/alerts?limit=500").then(must).then(showAlerts)];
      if (now() - lastIngest > 5000) { lastIngest = now(); jobs.push(showIngest()); }
      if (now() - lastBusy > 15000) { lastBusy = now(); jobs.push(showBusy()); }
      return Promise.all(jobs);
    });
  }
  function showAlerts(d) {
    var el = $("alerts");
    if (!el) return;
    var order = { firing: 0, pending: 1, acknowledged: 2 };
    var list = (d.alerts || []).filter(function (a) { return a.state in order; });
    list.sort(function (a, b) { return order[a.state] - order[b.state] || Date.parse(a.started_at) - Date.parse(b.started_at); });
    if (same(el, list)) return;
    el.textContent = "";
    add(el, table([{ t: "State" }, { t: "Severity" }, { t: "Rule" }, { t: "Group" }, { t: "Age" }, { t: "Count", num: true }],
      list.map(function (a) {
        return [state(a.state), sev(a.severity), h("a", { href: "#/alerts/" + encodeURIComponent(a.id), "class": "alert-link" }, a.rule_name),
          a.group || "—", h("time", { datetime: a.started_at, title: when(a.started_at) }, ago(a.started_at)), a.count];
      }), "No firing, pending or acknowledged alerts."));
  }
  // showBusy ranks the enabled rules' keywords by their last hour.
  function showBusy() {
    return api("GET", "/rules").then(must).then(function (d) {
      var seen = {}, specs = [];
      (d.rules || []).forEach(function (r) {
        if (!r.enabled) return;
        r.keywords.forEach(function (k) {
          var id = r.match + ":" + k + ":" + r.ignore_case;
          if (!seen[id] && specs.length < 20) { seen[id] = 1; specs.push({ k: k, match: r.match, ic: r.ignore_case }); }
        });
      });
      var to = Math.floor(now() / 60000) * 60 + 60, from = to - 3600;
      var out = [];
      // Three at a time: the API serves a few counts calls at once.
      function next(i) {
        if (i >= specs.length) return Promise.resolve();
        return Promise.all(specs.slice(i, i + 3).map(function (s) {
          return api("GET", "/counts?" + kwQuery(s.k, s.match, s.ic) + "&from=" + iso(from * 1000) + "&to=" + iso(to * 1000)).then(function (r) {
            if (r.status === 200) out.push({ s: s, total: r.data.total, ys: minutes(from, to, pointsByMinute(r.data.points)).ys });
          });
        })).then(function () { return next(i + 3); });
      }
      return next(0).then(function () {
        var el = $("busy");
        if (!el) return;
        out.sort(function (a, b) { return b.total - a.total; });
        el.textContent = "";
        requestAnimationFrame(function () { el.setAttribute("data-drawn-at", performance.now().toFixed(0)); });
        add(el, table([{ t: "Keyword" }, { t: "Last hour" }, { t: "Total", num: true }], out.slice(0, 10).map(function (o) {
          return [h("a", { href: "#/series?keyword=" + encodeURIComponent(o.s.k) + "&match=" + o.s.match + (o.s.ic ? "&ignore_case=true" : "") }, o.s.k + (o.s.ic ? " (any case)" : "") + (o.s.match !== "substring" ? " [" + o.s.match + "]" : "")),
            spark(o.ys), o.total];
        }), "No rule keywords yet."));
      });
    });
  }
  function tile(k, v, id) { return h("div", { "class": "tile" }, h("div", { "class": "v", id: id }, v), h("div", { "class": "k" }, k)); }
  function showIngest() {
    return Promise.all([api("GET", "/health/ingest"), api("GET", "/outbox")]).then(function (rs) {
      var el = $("ingest");
      if (!el) return;
      var ing = rs[0].status === 200 ? rs[0].data : null, ob = rs[1].status === 200 ? rs[1].data : null;
      var view = { ing: ing && Object.assign({}, ing, { hosts: (ing.hosts || []).map(function (x) { return [x.host, ago(x.last_heard)]; }) }), ob: ob && [ob.pending.length, ob.failed.length] };
      if (same(el, view)) return;
      el.textContent = "";
      if (!ing) { add(el, h("p", { "class": "muted" }, "No ingest health API.")); }
      else {
        add(el, h("div", { "class": "tiles" },
          tile("lag (entries)", ing.lag === undefined ? "—" : ing.lag, "ingest-lag"),
          tile("entries/s (10 s)", (ing.entries_per_second_capped ? "≥ " : "") + ing.entries_per_second.toFixed(1), "ingest-rate"),
          tile("pending", ing.pending === undefined ? "—" : ing.pending, "ingest-pending"),
          tile("dead letters", ing.dead_letters, "ingest-dead"),
          tile("outbox pending", ob ? ob.pending.length : "—", "outbox-pending"),
          tile("outbox rejected", ob ? ob.failed.length : "—", "outbox-rejected")));
        add(el, h("h3", null, "Hosts last heard from"), table([{ t: "Host" }, { t: "Last heard" }],
          (ing.hosts || []).slice(0, 50).map(function (x) { return [x.host, h("time", { datetime: x.last_heard, title: when(x.last_heard) }, ago(x.last_heard) + " ago")]; }),
          "No entries in the stream."));
      }
    });
  }

  // ---- series explorer ----
  var RANGES = [["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800]];
  function field(id, label, input, hint) {
    input.id = id;
    if (!input.name) input.name = id.replace(/^f-/, "");
    return h("div", { "class": "field" + (input.type === "checkbox" ? " check" : "") },
      input.type === "checkbox" ? [input, h("label", { "for": id }, label)] : [h("label", { "for": id }, label), input],
      hint ? h("span", { "class": "muted" }, hint) : null,
      h("span", { "class": "ferr", id: id + "-err", "data-field": input.name }));
  }
  function select(opts, v) { return h("select", null, opts.map(function (o) { return h("option", { value: o, selected: o === v }, o); })); }
  // labelRows edits name → glob pairs, a row each, with Add and Remove;
  // names offers the label names known (a datalist: any name can be typed).
  function labelRows(prefix, what, pairs, names) {
    var listId = prefix + "-names", n = 0;
    var dl = h("datalist", { id: listId });
    var box = h("div", { "class": "label-rows", id: prefix + "-rows" });
    function row(name, glob) {
      var i = ++n;
      var ni = h("input", { id: prefix + "-name-" + i, value: name || "", list: listId, "class": "label-name", autocomplete: "off", placeholder: "label name" });
      var gi = h("input", { id: prefix + "-glob-" + i, value: glob || "", "class": "label-glob", placeholder: "glob, e.g. shop*" });
      var r = h("div", { "class": "row label-row" },
        h("div", { "class": "field" }, h("label", { "for": ni.id }, what + " " + i + ": label"), ni),
        h("div", { "class": "field" }, h("label", { "for": gi.id }, what + " " + i + ": matches"), gi),
        h("button", { type: "button", "class": "secondary", "aria-label": "Remove " + what.toLowerCase() + " " + i, onclick: function () { r.parentNode.removeChild(r); $(prefix + "-add").focus(); } }, "Remove"));
      box.appendChild(r);
      return ni;
    }
    pairs.forEach(function (p) { row(p[0], p[1]); });
    var rows = {
      el: h("fieldset", { "class": "label-set" }, h("legend", null, what + "s"), dl, box,
        h("span", { "class": "ferr", id: prefix + "-err", "data-field": "labels" }),
        h("div", null, h("button", { type: "button", "class": "secondary", id: prefix + "-add", onclick: function () { row("", "").focus(); } }, "Add " + what.toLowerCase()))),
      // pairs are the rows with a name, in order.
      pairs: function () {
        var out = [];
        Array.prototype.forEach.call(box.querySelectorAll(".label-row"), function (r) {
          var k = r.querySelector(".label-name").value.trim();
          if (k) out.push([k, r.querySelector(".label-glob").value]);
        });
        return out;
      },
      names: function (list) {
        dl.textContent = "";
        add(dl, list.map(function (x) { return h("option", { value: x }); }));
      },
    };
    rows.names(names || []);
    return rows;
  }
  // labelNames is the label names the newest stream entries carry (from
  // ingest health), plus extra; sorted, without duplicates.
  function labelNames(extra) {
    return api("GET", "/health/ingest").then(function (r) {
      var seen = {};
      ((r.status === 200 && r.data.label_names) || []).concat(extra || []).forEach(function (x) { if (x) seen[x] = true; });
      return Object.keys(seen).sort();
    }).catch(function () { return (extra || []).filter(Boolean).sort(); });
  }
  function series(q) {
    var p = params(q);
    var m = page("Series explorer");
    var kw = h("input", { value: p.keyword || "", required: true });
    var match = select(["substring", "word", "regex"], p.match || "substring");
    var ic = h("input", { type: "checkbox", checked: p.ignore_case === "true" });
    var range = select(RANGES.map(function (r) { return r[0]; }), p.range || "1h");
    var byVal = p.by && p.by !== "none" ? p.by : "";
    // Any label name can be typed; host, tag and the names seen are offered.
    var byList = h("datalist", { id: "by-names" }, ["host", "tag"].map(function (x) { return h("option", { value: x }); }));
    var by = h("input", { value: byVal, list: "by-names", autocomplete: "off", placeholder: "none", "aria-describedby": "f-by-hint" });
    var host = h("input", { value: p.host || "", placeholder: "exact host" });
    var tag = h("input", { value: p.tag || "", placeholder: "exact tag" });
    var topn = h("input", { type: "number", min: 1, max: 10, value: p.top || "5" });
    var filters = Object.keys(p).filter(function (k) { return k.indexOf("label.") === 0; }).sort().map(function (k) { return [k.slice(6), p[k]]; });
    var lrows = labelRows("f-lf", "Label filter", filters, []);
    var form = h("form", { "class": "stack", id: "series-form", onsubmit: function (ev) {
      ev.preventDefault();
      var qs = ["keyword=" + encodeURIComponent(kw.value), "match=" + match.value, "range=" + range.value, "by=" + encodeURIComponent(by.value.trim() || "none"), "top=" + topn.value];
      if (ic.checked) qs.push("ignore_case=true");
      if (host.value) qs.push("host=" + encodeURIComponent(host.value));
      if (tag.value) qs.push("tag=" + encodeURIComponent(tag.value));
      lrows.pairs().forEach(function (x) { qs.push("label." + encodeURIComponent(x[0]) + "=" + encodeURIComponent(x[1])); });
      location.hash = "#/series?" + qs.join("&");
    } },
      h("div", { "class": "row" }, field("f-keyword", "Keyword", kw), field("f-match", "Match", match), field("f-range", "Range", range)),
      h("div", { "class": "row" }, field("f-ignore_case", "Ignore case", ic)),
      h("div", { "class": "row" }, field("f-by", "Break down by", by, "host, tag or a label name; empty: none"), byList, field("f-top", "Top N", topn), field("f-host", "Host filter", host), field("f-tag", "Tag filter", tag)),
      lrows.el,
      h("div", null, h("button", { type: "submit" }, "Show")));
    form.querySelector("#f-by + .muted").id = "f-by-hint";
    var chart = h("div", { "class": "chart", id: "series-chart" });
    var err = h("p", { "class": "error", role: "alert" });
    var topBox = h("div", { id: "series-top" });
    add(m, h("section", { "class": "panel" }, form), err, h("section", { "class": "panel" }, chart), topBox);
    labelNames([byVal].concat(filters.map(function (x) { return x[0]; })).filter(function (x) { return x !== "host" && x !== "tag"; })).then(function (names) {
      lrows.names(names);
      add(byList, names.map(function (x) { return h("option", { value: x }); }));
      form.setAttribute("data-label-names", names.join(","));
    });
    if (!p.keyword) { kw.focus(); return; }
    var secs = RANGES.filter(function (r) { return r[0] === range.value; })[0][1];
    var to = Math.floor(now() / 60000) * 60 + 60, from = to - secs;
    var filt = (p.host ? "&host=" + encodeURIComponent(p.host) : "") + (p.tag ? "&tag=" + encodeURIComponent(p.tag) : "") +
      filters.map(function (x) { return "&label." + encodeURIComponent(x[0]) + "=" + encodeURIComponent(x[1]); }).join("");
    var top = Math.min(10, Math.max(1, parseInt(p.top, 10) || 5));
    // One call: the series' points and, with a breakdown, its top N values
    // each with their points, all under the same filters.
    var url = "/counts?" + kwQuery(p.keyword, p.match, p.ignore_case === "true") + "&from=" + iso(from * 1000) + "&to=" + iso(to * 1000) + filt +
      (byVal ? "&by=" + encodeURIComponent(byVal) + "&limit=" + top : "");
    api("GET", url).then(function (r) {
      if (r.status !== 200) { err.textContent = r.data.error + (r.data.fields ? ": " + r.data.fields.map(function (f) { return f.field + " " + f.message; }).join("; ") : ""); return; }
      var total = minutes(from, to, pointsByMinute(r.data.points));
      chart.setAttribute("data-total", String(r.data.total));
      chart.setAttribute("data-sum", String(total.ys.reduce(function (a, b) { return a + b; }, 0)));
      var all = { label: filt ? "filtered" : "all hosts and tags", ys: total.ys };
      if (!byVal) { drawChart(chart, p.keyword, total.xs, [all]); return; }
      var items = r.data.series || [];
      add(topBox, h("section", { "class": "panel" }, h("h2", null, "Top " + items.length + " by " + byVal + ", " + range.value), table([{ t: byVal }, { t: "Count", num: true }],
        items.map(function (it) { return [it.value === "" ? h("span", { "class": "muted" }, "(empty)") : it.value, it.total]; }), "Nothing counted.")));
      drawChart(chart, p.keyword + " by " + byVal, total.xs, [all].concat(items.map(function (it) {
        return { label: byVal + "=" + it.value, ys: minutes(from, to, pointsByMinute(it.points)).ys };
      })));
    });
  }

  // ---- alert detail ----
  function alertDetail(id) {
    id = decodeURIComponent(id);
    var m = page("Alert");
    var head = h("div", { id: "alert-head" });
    var acts = h("div", { "class": "actions" });
    var chart = h("div", { "class": "chart", id: "alert-chart" });
    var samples = h("div", { id: "alert-samples" });
    var hist = h("div", { id: "alert-history" });
    add(m, head, acts, h("section", { "class": "panel" }, h("h2", null, "Counts per minute"), chart),
      h("div", { "class": "grid" }, h("section", { "class": "panel" }, h("h2", null, "Sample lines"), samples), h("section", { "class": "panel" }, h("h2", null, "History"), hist)));
    var a = null;
    function act(path, label) {
      return h("button", { type: "button", id: "btn-" + path, onclick: function () {
        api("POST", "/alerts/" + encodeURIComponent(id) + "/" + path, { by: "console" }).then(function (r) {
          say(r.status === 200 ? label + "d." : (r.data && r.data.error) || "failed");
        });
      } }, label);
    }
    poll(function () {
      return api("GET", "/alerts/" + encodeURIComponent(id)).then(function (r) {
        if (r.status === 404) { head.textContent = "No such alert (resolved alerts expire)."; return; }
        var d = must(r);
        a = d;
        var view = Object.assign({}, d, { updated_at: 0 });
        if (same(head, view)) return;
        document.title = d.rule_name + " · keyalert";
        m.querySelector("h1").textContent = d.rule_name;
        head.textContent = "";
        add(head, h("p", null, state(d.state), " ", sev(d.severity), " ", d.group_by !== "none" ? [].concat(d.group_by).join(", ") + " " + d.group : "", " · started ", h("time", { datetime: d.started_at }, when(d.started_at)), " (", ago(d.started_at), " ago) · count ", d.count, " · ", cond(d.condition), d.silenced_by ? " · silenced" : "", d.acked_by ? " · acknowledged by " + d.acked_by : ""),
          h("p", null, "Keywords: ", d.keywords.join(", "), " · rule ", h("a", { href: "#/rules/" + encodeURIComponent(d.rule_id) }, d.rule_id)));
        acts.textContent = "";
        add(acts, act("ack", "Acknowledge"), act("resolve", "Resolve"),
          h("a", { href: silenceHref(d), id: "btn-silence", "class": "button secondary" }, "Silence"));
        Array.prototype.forEach.call(acts.querySelectorAll("button"), function (b) {
          if ((b.id === "btn-ack" && d.state !== "firing") || (b.id === "btn-resolve" && d.state === "resolved")) b.disabled = true;
        });
        var cpm = d.counts_per_minute || {}, keys = Object.keys(cpm).sort();
        destroyCharts(); chart.textContent = "";
        if (keys.length) {
          var first = Date.parse(keys[0]) / 1000, last = Date.parse(keys[keys.length - 1]) / 1000 + 60;
          var byMin = {}; keys.forEach(function (k) { byMin[Date.parse(k) / 1000] = cpm[k]; });
          var mm = minutes(first, last, byMin);
          var thr = d.condition && (d.condition.type === "threshold" || d.condition.type === "absence") ? (d.condition.count || 1) : null;
          drawChart(chart, "per minute", mm.xs, [{ label: d.keywords.join(", "), ys: mm.ys }], thr);
        } else add(chart, h("p", { "class": "muted" }, "No counts in the rule's window."));
        samples.textContent = "";
        add(samples, (d.sample_lines || []).length ? h("ul", { "class": "samples" }, d.sample_lines.map(function (s) {
          return h("li", null, h("span", { "class": "muted" }, when(new Date(s.minute * 1000)) + " " + s.host + " " + s.tag + " " + Object.keys(s.labels || {}).sort().map(function (k) { return k + "=" + s.labels[k]; }).join(" ") + " "), s.line);
        })) : h("p", { "class": "muted" }, "No sample lines."));
        hist.textContent = "";
        add(hist, table([{ t: "At" }, { t: "Event" }, { t: "Detail" }], (d.history || []).slice().reverse().map(function (e) { return [when(e.at), e.event, e.detail || ""]; }), "No history."));
      });
    });
  }
  // silenceHref prefills a silence with the alert's rule and its group's
  // labels (host and tag among them when grouped by), each matching its
  // exact value.
  function silenceHref(a) {
    var q = ["rule_id=" + encodeURIComponent(a.rule_id)];
    var labels = a.labels || {};
    if (!Object.keys(labels).length && a.group && (a.group_by === "host" || a.group_by === "tag")) { labels = {}; labels[a.group_by] = a.group; }
    Object.keys(labels).sort().forEach(function (k) {
      q.push((k === "host" || k === "tag" ? k : "label." + encodeURIComponent(k)) + "=" + encodeURIComponent(labels[k]));
    });
    return "#/silences/new?" + q.join("&");
  }

  // ---- field errors ----
  // showErrors puts each of the API's fields[] at its input: the element
  // whose data-field is the longest prefix of the field's name
  // ("keywords[0]" → keywords, "condition.count" → condition.count).
  function showErrors(form, res) {
    Array.prototype.forEach.call(form.querySelectorAll(".ferr"), function (e) { e.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (e) { e.removeAttribute("aria-invalid"); });
    var general = form.querySelector(".form-error");
    general.textContent = "";
    if (!res || res.status < 400) return;
    var d = res.data || {}, firstBad = null;
    (d.fields || []).forEach(function (f) {
      var best = null, bestLen = -1;
      Array.prototype.forEach.call(form.querySelectorAll(".ferr[data-field]"), function (e) {
        var n = e.getAttribute("data-field");
        if ((f.field === n || f.field.indexOf(n + "[") === 0 || f.field.indexOf(n + ".") === 0) && n.length > bestLen) { best = e; bestLen = n.length; }
      });
      if (best) {
        best.textContent = (best.textContent ? best.textContent + "; " : "") + (f.field !== best.getAttribute("data-field") ? f.field + ": " : "") + f.message;
        var inp = document.getElementById(best.id.replace(/-err$/, ""));
        if (inp) { inp.setAttribute("aria-invalid", "true"); inp.setAttribute("aria-describedby", best.id); firstBad = firstBad || inp; }
      } else general.textContent += f.field + ": " + f.message + " ";
    });
    if (!d.fields || !d.fields.length) general.textContent = d.error || ("HTTP " + res.status);
    if (firstBad) firstBad.focus();
  }

  // ---- rules ----
  function rulesList() {
    var m = page("Rules");
    add(m, h("div", { "class": "actions" }, h("a", { href: "#/rules/new", id: "new-rule" }, "New rule")));
    var box = h("div", { id: "rules" });
    add(m, box);
    poll(function () {
      return api("GET", "/rules").then(must).then(function (d) {
        if (same(box, d.rules)) return;
        box.textContent = "";
        add(box, table([{ t: "Name" }, { t: "Keywords" }, { t: "Condition" }, { t: "Group by" }, { t: "Severity" }, { t: "Enabled" }, { t: "" }],
          (d.rules || []).map(function (r) {
            return [h("a", { href: "#/rules/" + encodeURIComponent(r.id) }, r.name), r.keywords.join(", ") + (r.match !== "substring" ? " [" + r.match + "]" : "") + (r.ignore_case ? " (any case)" : ""),
              cond(r.condition), [].concat(r.group_by).join(", "), sev(r.severity),
              h("button", { type: "button", "class": "secondary", "aria-pressed": r.enabled ? "true" : "false", "aria-label": (r.enabled ? "Disable " : "Enable ") + r.name, onclick: function () {
                var body = Object.assign({}, r, { enabled: !r.enabled });
                api("PUT", "/rules/" + encodeURIComponent(r.id), body).then(function (x) { say(x.status === 200 ? (body.enabled ? "Enabled." : "Disabled.") : x.data.error); box.dataset.last = ""; });
              } }, r.enabled ? "on" : "off"),
              h("button", { type: "button", "class": "danger", "aria-label": "Delete " + r.name, onclick: function () {
                if (!confirm("Delete rule " + r.name + "?")) return;
                api("DELETE", "/rules/" + encodeURIComponent(r.id)).then(function (x) { say(x.status === 204 ? "Deleted." : x.data.error); box.dataset.last = ""; });
              } }, "Delete")];
          }), "No rules yet."));
      });
    });
  }
  function ruleForm(id) {
    var m = page(id ? "Edit rule" : "New rule");
    var f = {
      name: h("input", { required: true }),
      keywords: h("textarea", { rows: 3, required: true }),
      match: select(["substring", "word", "regex"], "substring"),
      ignore_case: h("input", { type: "checkbox" }),
      ctype: select(["threshold", "absence", "spike"], "threshold"),
      count: h("input", { type: "number", min: 0, value: "5" }),
      window: h("input", { value: "5m" }),
      factor: h("input", { type: "number", step: "any", value: "" }),
      min_count: h("input", { type: "number", value: "" }),
      baseline: h("input", { value: "" }),
      group_by: h("input", { value: "none", placeholder: "none, host, tag, a label, or names joined by commas" }),
      fhost: h("input", { placeholder: "glob, e.g. web-*" }),
      ftag: h("input", { placeholder: "glob" }),
      severity: select(["critical", "error", "warning", "info"], "error"),
      routing_key: h("input", { autocomplete: "off", placeholder: "32 characters; empty: the default key" }),
      repeat_interval: h("input", { value: "" , placeholder: "e.g. 1h; 0 never" }),
      resolve_after: h("input", { value: "", placeholder: "default 5m" }),
      for_: h("input", { value: "", placeholder: "default 0s" }),
      runbook_url: h("input", { type: "url" }),
      enabled: h("input", { type: "checkbox", checked: true }),
    };
    f.ctype.name = "condition.type"; f.count.name = "condition.count"; f.window.name = "condition.window";
    f.factor.name = "condition.factor"; f.min_count.name = "condition.min_count"; f.baseline.name = "condition.baseline";
    f.fhost.name = "filters.host"; f.ftag.name = "filters.tag"; f.routing_key.name = "pagerduty.routing_key"; f.for_.name = "for";
    var original = null;
    function body() {
      var b = original ? Object.assign({}, original) : {};
      delete b.id; delete b.created_at; delete b.updated_at;
      b.name = f.name.value;
      b.keywords = f.keywords.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
      b.match = f.match.value; b.ignore_case = f.ignore_case.checked;
      var c = { type: f.ctype.value, window: f.window.value };
      if (f.count.value !== "" && c.type !== "spike") c.count = Number(f.count.value);
      if (c.type === "spike") {
        if (f.factor.value !== "") c.factor = Number(f.factor.value);
        if (f.min_count.value !== "") c.min_count = Number(f.min_count.value);
        if (f.baseline.value) c.baseline = f.baseline.value;
        if (original && original.condition && original.condition.seasonal && !f.baseline.value) c.seasonal = original.condition.seasonal;
      }
      b.condition = c;
      var dims = f.group_by.value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
      b.group_by = dims.length > 1 ? dims : (dims[0] || "none");
      // Label filters the form does not show are kept as they are.
      b.filters = Object.assign({}, (original && original.filters) || {});
      delete b.filters.host; delete b.filters.tag;
      if (f.fhost.value) b.filters.host = f.fhost.value;
      if (f.ftag.value) b.filters.tag = f.ftag.value;
      b.severity = f.severity.value;
      b.pagerduty = f.routing_key.value ? { routing_key: f.routing_key.value } : {};
      ["repeat_interval", "resolve_after", "runbook_url"].forEach(function (k) { if (f[k].value) b[k] = f[k].value; else delete b[k]; });
      if (f.for_.value) b["for"] = f.for_.value; else delete b["for"];
      b.enabled = f.enabled.checked;
      return b;
    }
    var preview = h("div", { id: "rule-preview" });
    var form = h("form", { "class": "stack", id: "rule-form", novalidate: true, onsubmit: function (ev) {
      ev.preventDefault();
      api(id ? "PUT" : "POST", id ? "/rules/" + encodeURIComponent(id) : "/rules", body()).then(function (r) {
        showErrors(form, r);
        if (r.status < 300) { say("Saved."); location.hash = "#/rules"; }
      });
    } },
      field("f-name", "Name", f.name),
      field("f-keywords", "Keywords (one per line)", f.keywords),
      h("div", { "class": "row" }, field("f-match", "Match", f.match), field("f-ignore_case", "Ignore case", f.ignore_case)),
      h("fieldset", null, h("legend", null, "Condition"),
        h("div", { "class": "row" }, field("f-ctype", "Type", f.ctype), field("f-count", "Count", f.count), field("f-window", "Window", f.window)),
        h("div", { "class": "row" }, field("f-factor", "Spike factor", f.factor), field("f-min_count", "Spike min count", f.min_count), field("f-baseline", "Spike baseline", f.baseline))),
      h("div", { "class": "row" }, field("f-group_by", "Group by", f.group_by), field("f-fhost", "Host filter", f.fhost), field("f-ftag", "Tag filter", f.ftag)),
      h("div", { "class": "row" }, field("f-severity", "Severity", f.severity), field("f-routing_key", "PagerDuty routing key", f.routing_key)),
      h("div", { "class": "row" }, field("f-repeat_interval", "Repeat interval", f.repeat_interval), field("f-resolve_after", "Resolve after", f.resolve_after), field("f-for", "For", f.for_)),
      field("f-runbook_url", "Runbook URL", f.runbook_url),
      field("f-enabled", "Enabled", f.enabled),
      h("p", { "class": "error form-error", role: "alert" }),
      h("div", { "class": "actions" }, h("button", { type: "submit", id: "rule-save" }, "Save"),
        h("button", { type: "button", "class": "secondary", id: "rule-preview-btn", onclick: function () {
          preview.textContent = "Replaying the last 24 hours…";
          api("POST", "/rules/preview", body()).then(function (r) {
            showErrors(form, r);
            preview.textContent = "";
            if (r.status !== 200) return;
            add(preview, h("h2", null, "Would have sent over the last 24 hours"), table([{ t: "At" }, { t: "Event" }, { t: "Group" }, { t: "Count", num: true }, { t: "Summary" }],
              r.data.events.map(function (e) { return [when(e.at), e.kind, e.group || "—", e.count, e.summary]; }), "Nothing: the rule would not have fired."));
          });
        } }, "Preview last 24 h"),
        h("a", { href: "#/rules" }, "Cancel")));
    add(m, h("section", { "class": "panel" }, form), preview);
    if (!id) { f.name.focus(); return; }
    api("GET", "/rules/" + encodeURIComponent(id)).then(function (r) {
      if (r.status !== 200) { showErrors(form, r); return; }
      var d = r.data; original = d;
      f.name.value = d.name; f.keywords.value = d.keywords.join("\n"); f.match.value = d.match; f.ignore_case.checked = d.ignore_case;
      f.ctype.value = d.condition.type; f.count.value = d.condition.count || ""; f.window.value = d.condition.window;
      f.factor.value = d.condition.factor || ""; f.min_count.value = d.condition.min_count || ""; f.baseline.value = d.condition.baseline || "";
      f.group_by.value = Array.isArray(d.group_by) ? d.group_by.join(", ") : d.group_by; f.fhost.value = (d.filters || {}).host || ""; f.ftag.value = (d.filters || {}).tag || "";
      f.severity.value = d.severity; f.routing_key.value = (d.pagerduty || {}).routing_key || "";
      f.repeat_interval.value = d.repeat_interval || ""; f.resolve_after.value = d.resolve_after || ""; f.for_.value = d["for"] || "";
      f.runbook_url.value = d.runbook_url || ""; f.enabled.checked = d.enabled;
      f.name.focus();
    });
  }

  // ---- silences ----
  function localInput(ms) { var d = new Date(ms); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 16); }
  function fromLocal(v) { return new Date(v).toISOString(); }
  function silences() {
    var m = page("Silences");
    add(m, h("div", { "class": "actions" }, h("a", { href: "#/silences/new", id: "new-silence" }, "New silence")));
    var act = h("div", { id: "silences-active" }), exp = h("div", { id: "silences-expired" });
    add(m, h("h2", null, "Active"), act, h("h2", null, "Expired"), exp);
    function matchers(s) {
      var l = s.labels || {};
      return ["rule_id", "host", "tag", "keyword"].filter(function (k) { return s[k]; }).map(function (k) { return k + "=" + s[k]; })
        .concat(Object.keys(l).sort().map(function (k) { return k + "=" + l[k]; })).join(" ");
    }
    poll(function () {
      return api("GET", "/silences").then(must).then(function (d) {
        var list = d.silences || [];
        var t = now();
        var active = list.filter(function (s) { return Date.parse(s.end) > t; });
        var expired = list.filter(function (s) { return Date.parse(s.end) <= t; });
        if (same(act, [active, expired])) return;
        act.textContent = ""; exp.textContent = "";
        add(act, table([{ t: "Matches" }, { t: "Start" }, { t: "End" }, { t: "Author" }, { t: "Comment" }, { t: "" }], active.map(function (s) {
          var endIn = h("input", { type: "datetime-local", value: localInput(Date.parse(s.end)), "aria-label": "New end of silence " + matchers(s) });
          return [h("span", { "class": "silence-matchers" }, matchers(s)), when(s.start), when(s.end), s.author, s.comment || "",
            h("div", { "class": "row" }, endIn,
              h("button", { type: "button", "class": "secondary", onclick: function () { editEnd(s, fromLocal(endIn.value)); } }, "Set end"),
              h("button", { type: "button", "class": "danger", onclick: function () {
                api("DELETE", "/silences/" + encodeURIComponent(s.id)).then(function (x) { say(x.status === 204 ? "Expired." : x.data.error); act.dataset.last = ""; });
              } }, "Expire"))];
        }), "No active silences."));
        add(exp, table([{ t: "Matches" }, { t: "Start" }, { t: "End" }, { t: "Author" }, { t: "Comment" }], expired.map(function (s) {
          return [matchers(s), when(s.start), when(s.end), s.author, s.comment || ""];
        }), "No expired silences kept."));
      });
    });
    // The API has no update: a new end is a new silence with the same
    // matchers, then the old one is removed (in that order, so nothing
    // pages in between).
    function editEnd(s, end) {
      var b = { start: s.start, end: end, author: s.author, comment: s.comment };
      ["rule_id", "host", "tag", "keyword", "labels"].forEach(function (k) { if (s[k]) b[k] = s[k]; });
      api("POST", "/silences", b).then(function (r) {
        if (r.status >= 300) { say(r.data.error + (r.data.fields ? ": " + r.data.fields.map(function (f) { return f.field + " " + f.message; }).join("; ") : "")); return; }
        return api("DELETE", "/silences/" + encodeURIComponent(s.id)).then(function () { say("End changed."); act.dataset.last = ""; });
      });
    }
  }
  function silenceForm(q) {
    var p = params(q);
    var m = page("New silence");
    var f = {
      rule_id: h("input", { value: p.rule_id || "" }), host: h("input", { value: p.host || "", placeholder: "glob" }),
      tag: h("input", { value: p.tag || "", placeholder: "glob" }), keyword: h("input", { value: p.keyword || "" }),
      end: h("input", { type: "datetime-local", required: true, value: localInput(now() + 2 * 3600 * 1000) }),
      author: h("input", { required: true, value: "console" }), comment: h("input", { value: "" }),
    };
    var given = Object.keys(p).filter(function (k) { return k.indexOf("label.") === 0; }).sort().map(function (k) { return [k.slice(6), p[k]]; });
    var lrows = labelRows("f-lm", "Label matcher", given, []);
    labelNames(given.map(function (x) { return x[0]; })).then(lrows.names);
    var form = h("form", { "class": "stack", id: "silence-form", novalidate: true, onsubmit: function (ev) {
      ev.preventDefault();
      var b = { end: f.end.value ? fromLocal(f.end.value) : "", author: f.author.value };
      ["rule_id", "host", "tag", "keyword", "comment"].forEach(function (k) { if (f[k].value) b[k] = f[k].value; });
      var pairs = lrows.pairs();
      if (pairs.length) { b.labels = {}; pairs.forEach(function (x) { b.labels[x[0]] = x[1]; }); }
      api("POST", "/silences", b).then(function (r) {
        showErrors(form, r);
        if (r.status < 300) { say("Silence created."); location.hash = "#/silences"; }
      });
    } },
      h("p", { "class": "muted" }, "Matches alerts on every field given (host, tag and label values are globs)."),
      h("div", { "class": "row" }, field("f-rule_id", "Rule id", f.rule_id), field("f-keyword", "Keyword", f.keyword)),
      h("div", { "class": "row" }, field("f-host", "Host", f.host), field("f-tag", "Tag", f.tag)),
      lrows.el,
      h("div", { "class": "row" }, field("f-end", "Ends at (local time)", f.end), field("f-author", "Author", f.author)),
      field("f-comment", "Comment", f.comment),
      h("p", { "class": "error form-error", role: "alert" }),
      h("div", { "class": "actions" }, h("button", { type: "submit", id: "silence-save" }, "Create silence"), h("a", { href: "#/silences" }, "Cancel")));
    add(m, h("section", { "class": "panel" }, form));
    f.end.focus();
  }

  // ---- receivers and outbox ----
  function outbox() {
    var m = page("Receivers & outbox");
    var rec = h("div", { id: "receivers" }), pend = h("div", { id: "outbox-pending-list" }), fail = h("div", { id: "outbox-failed-list" });
    add(m, h("h2", null, "Receivers"), rec, h("h2", null, "Pending notifications"), pend, h("h2", null, "Rejected notifications"), fail);
    poll(function () {
      return Promise.all([api("GET", "/receivers"), api("GET", "/outbox")]).then(function (rs) {
        var r = rs[0], o = must(rs[1]);
        if (!same(rec, [r.status, r.data])) {
          rec.textContent = "";
          if (r.status === 404) add(rec, h("p", { "class": "muted" }, "No receivers API in this keyalertd: every rule pages PagerDuty (its routing key or KEYALERT_PAGERDUTY_ROUTING_KEY)."));
          else if (r.status === 200) {
            var list = r.data.receivers || [];
            add(rec, table([{ t: "Name" }, { t: "Type" }, { t: "Details" }], list.map(function (x) {
              var rest = Object.assign({}, x); delete rest.name; delete rest.type;
              return [x.name || x.id || "", x.type || x.integration || "", JSON.stringify(rest)];
            }), "No receivers."));
          } else add(rec, h("p", { "class": "error" }, (r.data && r.data.error) || "HTTP " + r.status));
        }
        if (!same(pend, o.pending)) {
          pend.textContent = "";
          add(pend, table([{ t: "Kind" }, { t: "Integration" }, { t: "Key" }, { t: "Enqueued" }, { t: "Attempts", num: true }, { t: "Next attempt" }, { t: "Last error" }], o.pending.map(function (x) {
            return [x.kind, x.integration, x.key, when(x.enqueued_at), x.attempts, when(x.next_attempt), x.last_error || ""];
          }), "Nothing waiting."));
        }
        if (!same(fail, o.failed)) {
          fail.textContent = "";
          add(fail, table([{ t: "Kind" }, { t: "Integration" }, { t: "Key" }, { t: "Failed" }, { t: "Status", num: true }, { t: "Reason" }], o.failed.map(function (x) {
            return [x.kind, x.integration, x.key, when(x.failed_at), x.status, x.reason];
          }), "Nothing rejected."));
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("signout").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    start();
  });
})();
