// flotilla's live dashboard. Plain JavaScript, no dependencies: it polls the admin JSON API
// once a second, keeps a few minutes of history in memory for the charts, and updates the
// page in place (rows are kept and their text changed, so nothing flickers and a hovered or
// selected row stays put). Every value from the server is inserted as text, never as markup.
'use strict';

(() => {
  const POLL_MS = 1000;
  const HISTORY_MS = 5 * 60 * 1000;
  const REQUEST_TIMEOUT_MS = 4000;
  // flotilla tells when it restarted (its event ids start again from 1): then the log is
  // fetched whole. A full fetch now and then covers a flotilla that does not say.
  const EVENTS_RESYNC_POLLS = 600;
  const MAX_EVENTS = 500;
  const SERIES_LIMIT = 7; // clusters drawn per chart (the busiest), plus the fleet line
  const ALERT_SUCCESS = 0.95; // monitoring/alerts.yaml: failure rate above 5 %
  const ALERT_P95_MS = 1000; // monitoring/alerts.yaml: p95 above 1 s

  const model = {
    state: null,
    nodes: null,
    traffic: null, // the last /api/v1/traffic answer, or null
    certificates: null, // the last /api/v1/certificates answer, or null
    mesh: null, // the last /api/v1/mesh answer, or null
    trafficProblem: 'waiting for the first answer',
    events: [],
    eventsProblem: null,
    lastEventId: null,
    eventsStartedAt: null,
    polls: 0,
    lastOk: null,
    failingSince: null,
    failure: null,
    history: [], // { t, fleet: {rps, sr}, clusters: { name: {rps, sr, p95} } } or { t, gap: true }
  };
  const colours = new Map(); // cluster name → palette index, stable while the page is open
  const hidden = new Set(); // series switched off in the legend

  // ---------- small DOM helpers ----------

  const $ = (sel, root = document) => root.querySelector(sel);
  const SVG = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function setText(e, text) {
    const s = String(text);
    if (e.textContent !== s) e.textContent = s;
  }

  // A cell showing a formatted number, with the raw value kept in data-value for tests and
  // for anyone reading the DOM.
  function setNumber(e, value, formatted) {
    setText(e, formatted);
    const raw = value === null || value === undefined ? '' : String(value);
    if (e.dataset.value !== raw) e.dataset.value = raw;
  }

  // Keeps one child per key under `parent`, in the order of `items`: existing children are
  // updated, new ones created, missing ones removed.
  function keyed(parent, items, key, create, update) {
    const existing = new Map();
    for (const child of Array.from(parent.children)) {
      if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
      else child.remove();
    }
    let cursor = parent.firstElementChild;
    for (const item of items) {
      const k = key(item);
      let node = existing.get(k);
      if (node) existing.delete(k);
      else {
        node = create(item);
        node.dataset.key = k;
      }
      update(node, item);
      if (node !== cursor) parent.insertBefore(node, cursor);
      else cursor = cursor.nextElementSibling;
    }
    for (const stale of existing.values()) stale.remove();
  }

  // ---------- formatting ----------

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  function fmtRate(v) {
    if (!isNum(v)) return '—';
    if (v >= 10000) return (v / 1000).toFixed(1) + 'k';
    if (v >= 100) return String(Math.round(v));
    return v.toFixed(1);
  }

  function fmtPct(sr) {
    if (!isNum(sr)) return '—';
    if (sr >= 1) return '100%';
    return (sr * 100).toFixed(sr >= 0.99 ? 2 : 1) + '%';
  }

  function fmtMs(ms) {
    if (!isNum(ms)) return '—';
    if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
    if (ms >= 10) return Math.round(ms) + ' ms';
    return ms.toFixed(1) + ' ms';
  }

  function fmtCount(v) {
    return isNum(v) ? String(Math.round(v)) : '—';
  }

  function fmtAgo(ms) {
    if (!isNum(ms)) return '—';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm ago';
    return Math.floor(s / 86400) + 'd ago';
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
  }

  const shortVersion = (v) => (v ? String(v).slice(0, 12) : '—');

  // ---------- polling ----------

  async function getJson(url) {
    try {
      const r = await fetch(url, {
        cache: 'no-store',
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      if (!r.ok) return { status: r.status };
      return { status: r.status, data: await r.json() };
    } catch (e) {
      return { error: e && e.name === 'TimeoutError' ? 'timed out' : 'unreachable' };
    }
  }

  async function poll() {
    const started = Date.now();
    const full = model.lastEventId === null || model.polls % EVENTS_RESYNC_POLLS === 0;
    const eventsUrl = full ? '/api/v1/events' : '/api/v1/events?since=' + model.lastEventId;
    const [state, nodes, traffic, events, certificates, mesh] = await Promise.all([
      getJson('/api/v1/state'),
      getJson('/api/v1/nodes'),
      getJson('/api/v1/traffic'),
      getJson(eventsUrl),
      getJson('/api/v1/certificates'),
      getJson('/api/v1/mesh'),
    ]);
    if (Array.isArray(certificates.data)) model.certificates = certificates.data;
    if (mesh.data && Array.isArray(mesh.data.services)) model.mesh = mesh.data;
    model.polls += 1;
    const now = Date.now();

    if (state.data && nodes.data) {
      model.state = state.data;
      model.nodes = nodes.data;
      model.lastOk = now;
      model.failingSince = null;
      model.failure = null;
    } else {
      model.failingSince = model.failingSince || now;
      model.failure = state.error || nodes.error || 'HTTP ' + (state.status || nodes.status);
    }

    if (traffic.data && Array.isArray(traffic.data.clusters)) {
      model.traffic = traffic.data;
      model.trafficProblem =
        traffic.data.reporting_envoys > 0 ? null : 'no traffic data yet: no Envoy is reporting its stats';
    } else {
      model.traffic = null;
      model.trafficProblem =
        traffic.status === 404
          ? 'no traffic data yet: this flotilla does not report traffic'
          : 'no traffic data yet: ' + (traffic.error || 'HTTP ' + traffic.status);
    }

    if (events.data && Array.isArray(events.data.events)) {
      const restarted =
        (model.eventsStartedAt !== null && events.data.started_at !== model.eventsStartedAt) ||
        (typeof events.data.latest_id === 'number' && model.lastEventId !== null && events.data.latest_id < model.lastEventId);
      model.eventsStartedAt = events.data.started_at ?? null;
      if (restarted && !full) {
        model.lastEventId = null; // the next poll fetches the new log whole
      } else {
        mergeEvents(events.data.events, full);
      }
      model.eventsProblem = null;
    } else if (events.status === 404) {
      model.eventsProblem = 'No event log from this flotilla yet.';
    } else if (!model.events.length) {
      model.eventsProblem = 'Events unavailable (' + (events.error || 'HTTP ' + events.status) + ').';
    }

    record(now);
    render();
    document.documentElement.dataset.polls = String(model.polls);
    setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }

  function mergeEvents(incoming, full) {
    if (full) {
      model.events = incoming.slice();
    } else {
      const seen = new Set(model.events.map((e) => e.id));
      for (const e of incoming) if (!seen.has(e.id)) model.events.push(e);
    }
    model.events.sort((a, b) => a.id - b.id);
    if (model.events.length > MAX_EVENTS) model.events.splice(0, model.events.length - MAX_EVENTS);
    const last = model.events[model.events.length - 1];
    model.lastEventId = last ? last.id : 0;
  }

  // ---------- history for the charts ----------

  function fleetTotals(traffic) {
    let rps = 0;
    let ok = 0;
    let counted = 0;
    let conns = 0;
    let inFlight = 0;
    let worst = null;
    for (const c of traffic.clusters) {
      if (isNum(c.rps)) rps += c.rps;
      if (isNum(c.success_rate) && isNum(c.rps) && c.rps > 0) {
        ok += c.success_rate * c.rps;
        counted += c.rps;
      }
      if (isNum(c.active_connections)) conns += c.active_connections;
      if (isNum(c.active_requests)) inFlight += c.active_requests;
      if (isNum(c.p95_ms) && (!worst || c.p95_ms > worst.p95_ms)) worst = c;
    }
    return { rps, sr: counted > 0 ? ok / counted : null, conns, inFlight, worst };
  }

  function record(now) {
    const h = model.history;
    if (model.traffic) {
      const totals = fleetTotals(model.traffic);
      const clusters = {};
      for (const c of model.traffic.clusters) {
        clusters[c.name] = { rps: c.rps, sr: c.success_rate, p95: c.p95_ms };
      }
      h.push({ t: now, fleet: { rps: totals.rps, sr: totals.sr }, clusters });
    } else {
      h.push({ t: now, gap: true });
    }
    while (h.length && h[0].t < now - HISTORY_MS) h.shift();
  }

  // ---------- rendering ----------

  function render() {
    document.body.classList.toggle('stale', model.failingSince !== null);
    document.title = (problems() ? '⚠ ' : '') + 'flotilla';
    renderHeader();
    renderReload();
    renderTiles();
    renderCharts();
    renderClusters();
    renderNodes();
    renderCertificates();
    renderMesh();
    renderEvents();
  }

  // Something a person should look at: for the tab title, so a background tab tells.
  function problems() {
    if (model.failingSince !== null) return true;
    const s = model.state;
    if (s && s.config.last_reload && s.config.last_reload.result === 'invalid') return true;
    if (s && s.clusters.some((c) => c.endpoints.some((e) => e.health === 'unhealthy'))) return true;
    if (model.nodes && model.nodes.some((n) => !n.in_sync)) return true;
    if (model.traffic) {
      const t = fleetTotals(model.traffic);
      if (srLevel(t.sr) === 'bad' || (t.worst && p95Level(t.worst.p95_ms))) return true;
    }
    return false;
  }

  function renderHeader() {
    const conn = $('#conn');
    if (model.failingSince !== null) {
      conn.className = 'conn conn-bad';
      setText(
        conn,
        '✕ flotilla ' + model.failure + ' since ' + fmtClock(model.failingSince) +
          (model.lastOk ? ' · showing data from ' + fmtAgo(model.lastOk) : '') + ' · retrying',
      );
    } else {
      conn.className = 'conn conn-ok';
      setText(conn, '● live · updated ' + fmtClock(model.lastOk));
    }
    const s = model.state;
    if (!s) return;
    const cfg = $('#config');
    const r = s.config.last_reload;
    const parts = [];
    parts.push(s.config.version ? 'serving version ' + shortVersion(s.config.version) : 'no valid config loaded');
    const rev = s.config.revision;
    if (rev) parts.push('revision ' + rev.commit.slice(0, 12) + (rev.dirty ? '-dirty' : '') + (rev.author ? ' by ' + rev.author : ''));
    if (r) parts.push('last reload ' + r.result + ' ' + fmtAgo(r.at) + ' (' + r.trigger + ')');
    setText(cfg, parts.join(' · '));
    cfg.title = s.config.path + (s.config.version ? '\nversion ' + s.config.version : '') +
      (rev ? '\nrevision ' + rev.commit + (rev.dirty ? ' (dirty)' : '') + ' from ' + rev.source + (rev.subject ? ': ' + rev.subject : '') : '');
  }

  function renderReload() {
    const box = $('#reload-error');
    const r = model.state && model.state.config.last_reload;
    const failed = !!r && r.result === 'invalid';
    box.hidden = !failed;
    if (!failed) return;
    const serving = model.state.config.version
      ? 'still serving version ' + shortVersion(model.state.config.version)
      : 'no valid config is being served';
    setText(
      $('#reload-error-title'),
      '⚠ Config reload rejected ' + fmtAgo(r.at) + ' (' + r.trigger + ') — ' + serving + '. ' +
        r.errors.length + (r.errors.length === 1 ? ' error:' : ' errors:'),
    );
    keyed($('#reload-errors'), r.errors.map((e, i) => [i + ':' + e, e]), (x) => x[0], () => el('li'), (li, x) =>
      setText(li, x[1]),
    );
  }

  function tile(id, value, raw, sub, level) {
    const t = $('#' + id);
    setNumber($('.value', t), raw, value);
    setText($('.sub', t), sub);
    t.classList.toggle('bad', level === 'bad');
    t.classList.toggle('warn', level === 'warn');
  }

  function srLevel(sr) {
    if (!isNum(sr)) return null;
    if (sr < ALERT_SUCCESS) return 'bad';
    if (sr < 0.99) return 'warn';
    return null;
  }

  const p95Level = (ms) => (isNum(ms) && ms > ALERT_P95_MS ? 'bad' : null);

  function renderTiles() {
    const status = $('#traffic-status');
    status.hidden = !model.trafficProblem;
    setText(status, model.trafficProblem || '');
    const tr = model.traffic;
    if (tr) {
      const t = fleetTotals(tr);
      const window = 'over ' + tr.window_seconds + ' s from ' + tr.reporting_envoys +
        (tr.reporting_envoys === 1 ? ' Envoy' : ' Envoys');
      tile('tile-rps', fmtRate(t.rps), t.rps, window);
      tile('tile-success', t.sr === null ? '—' : (srLevel(t.sr) === 'bad' ? '⚠ ' : '') + fmtPct(t.sr), t.sr,
        t.sr === null ? 'no requests' : 'answered without a 5xx', srLevel(t.sr));
      const p95 = t.worst ? t.worst.p95_ms : null;
      tile('tile-p95', (p95Level(p95) ? '⚠ ' : '') + fmtMs(p95), p95,
        t.worst ? 'slowest cluster: ' + t.worst.name : 'no requests', p95Level(p95));
      tile('tile-conns', fmtCount(t.conns), t.conns, fmtCount(t.inFlight) + ' requests in flight');
    } else {
      for (const id of ['tile-rps', 'tile-success', 'tile-p95', 'tile-conns']) tile(id, '—', null, 'no traffic data yet');
    }

    if (model.state) {
      let total = 0;
      let serving = 0;
      let unhealthy = 0;
      let draining = 0;
      for (const c of model.state.clusters) {
        for (const e of c.endpoints) {
          total += 1;
          if (e.draining) draining += 1;
          else if (e.health === 'unhealthy') unhealthy += 1;
          else serving += 1;
        }
      }
      const sub = [unhealthy + ' unhealthy', draining + ' draining'].join(' · ');
      tile('tile-endpoints', (unhealthy ? '⚠ ' : '') + serving + ' / ' + total, serving, sub, unhealthy ? 'warn' : null);
    }
    if (model.nodes) {
      const n = model.nodes.length;
      const syncing = model.nodes.filter((x) => !x.in_sync).length;
      const nacks = model.nodes.reduce((a, x) => a + totalNacks(x), 0);
      const sub = (syncing ? syncing + ' syncing' : 'all in sync') + ' · ' + nacks + (nacks === 1 ? ' NACK' : ' NACKs');
      tile('tile-envoys', String(n), n, n ? sub : 'none connected', n === 0 || nacks ? 'warn' : null);
    }
  }

  // ---------- charts ----------

  function colourOf(name) {
    if (!colours.has(name)) colours.set(name, colours.size % SERIES_LIMIT);
    return colours.get(name);
  }

  // The clusters drawn: the busiest now, in a stable order.
  function chartedClusters() {
    if (!model.traffic) return [];
    const byRps = model.traffic.clusters.slice().sort((a, b) => (b.rps || 0) - (a.rps || 0));
    const chosen = new Set(byRps.slice(0, SERIES_LIMIT).map((c) => c.name));
    return model.traffic.clusters.map((c) => c.name).filter((n) => chosen.has(n));
  }

  function series(names, pick, fleetPick) {
    const out = [];
    if (fleetPick) {
      out.push({ key: '*fleet', label: 'fleet', cls: 'series-fleet', points: model.history.map((s) => [s.t, s.gap ? null : fleetPick(s)]) });
    }
    for (const n of names) {
      out.push({
        key: n,
        label: n,
        cls: 'series s' + colourOf(n),
        points: model.history.map((s) => [s.t, s.gap || !s.clusters[n] ? null : pick(s.clusters[n])]),
      });
    }
    return out.filter((s) => !hidden.has(s.key));
  }

  // The top of a y axis with four gridline steps of a round size (1, 2, 2.5 or 5 × 10^k).
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const raw = v / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return 4 * m * p;
    return 40 * p;
  }

  function renderCharts() {
    const names = chartedClusters();
    const empty = model.trafficProblem && !model.history.some((s) => !s.gap) ? 'no traffic data yet' : null;

    const rps = series(names, (c) => c.rps, (s) => s.fleet.rps);
    const maxRps = Math.max(0, ...rps.flatMap((s) => s.points.map((p) => p[1] || 0)));
    drawChart('#chart-rps', rps, { min: 0, max: niceCeil(maxRps), fmt: fmtRate, empty });

    const sr = series(names, (c) => c.sr, (s) => s.fleet.sr);
    const minSr = Math.min(1, ...sr.flatMap((s) => s.points.map((p) => (isNum(p[1]) ? p[1] : 1))));
    const floor = minSr >= 0.99 ? 0.98 : minSr >= 0.9 ? 0.9 : Math.floor(minSr * 10) / 10;
    drawChart('#chart-success', sr, { min: floor, max: 1, fmt: fmtPct, threshold: ALERT_SUCCESS, empty });

    const p95 = series(names, (c) => c.p95, null);
    const maxP95 = Math.max(0, ...p95.flatMap((s) => s.points.map((p) => p[1] || 0)));
    const top = niceCeil(maxP95 * 1.1);
    drawChart('#chart-p95', p95, {
      min: 0,
      max: top,
      fmt: fmtMs,
      threshold: top >= ALERT_P95_MS ? ALERT_P95_MS : null,
      empty,
    });

    renderLegend(names);
  }

  function renderLegend(names) {
    const items = [{ key: '*fleet', label: 'fleet', cls: 'series-fleet' }].concat(
      names.map((n) => ({ key: n, label: n, cls: 'series s' + colourOf(n) })),
    );
    keyed(
      $('#legend'),
      model.traffic ? items : [],
      (i) => i.key,
      (i) => {
        const b = el('button', { type: 'button', class: 'legend-item' });
        const sw = svgEl('svg', { width: 22, height: 10, 'aria-hidden': 'true' });
        sw.append(svgEl('line', { x1: 1, y1: 5, x2: 21, y2: 5, class: i.cls }));
        b.append(sw, el('span', { text: i.label }));
        b.addEventListener('click', () => {
          if (hidden.has(i.key)) hidden.delete(i.key);
          else hidden.add(i.key);
          render();
        });
        return b;
      },
      (b, i) => {
        b.setAttribute('aria-pressed', String(!hidden.has(i.key)));
        b.title = (hidden.has(i.key) ? 'Show ' : 'Hide ') + i.label;
      },
    );
  }

  // One line chart over the last HISTORY_MS: time on x (now at the right edge), a value on y.
  function drawChart(sel, lines, opt) {
    const fig = $(sel);
    const plot = $('.plot', fig);
    const svg = $('svg', plot);
    const w = Math.max(200, plot.clientWidth);
    const h = Math.max(100, plot.clientHeight);
    const m = { l: 48, r: 8, t: 8, b: 18 };
    const now = Date.now();
    const x = (t) => m.l + ((t - (now - HISTORY_MS)) / HISTORY_MS) * (w - m.l - m.r);
    const span = opt.max - opt.min || 1;
    const y = (v) => m.t + (1 - (Math.min(Math.max(v, opt.min), opt.max) - opt.min) / span) * (h - m.t - m.b);

    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('width', w);
    svg.setAttribute('height', h);
    svg.replaceChildren();
    const emptyText = $('.empty', plot);
    emptyText.hidden = !opt.empty;
    setText(emptyText, opt.empty || '');
    fig.setAttribute('aria-label', describe(fig, lines, opt));
    if (opt.empty) {
      plot.onmousemove = null;
      return;
    }

    for (let i = 0; i <= 4; i++) {
      const v = opt.min + (span * i) / 4;
      svg.append(svgEl('line', { x1: m.l, x2: w - m.r, y1: y(v), y2: y(v), class: 'grid' }));
      const label = svgEl('text', { x: m.l - 4, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' });
      label.textContent = opt.fmt(v);
      svg.append(label);
    }
    for (const min of [5, 4, 3, 2, 1, 0]) {
      const label = svgEl('text', { x: x(now - min * 60000), y: h - 4, class: 'axis', 'text-anchor': min === 0 ? 'end' : 'middle' });
      label.textContent = min === 0 ? 'now' : '−' + min + 'm';
      svg.append(label);
    }
    if (isNum(opt.threshold) && opt.threshold >= opt.min && opt.threshold <= opt.max) {
      svg.append(svgEl('line', { x1: m.l, x2: w - m.r, y1: y(opt.threshold), y2: y(opt.threshold), class: 'threshold' }));
      const label = svgEl('text', { x: w - m.r - 2, y: y(opt.threshold) - 3, class: 'axis threshold-label', 'text-anchor': 'end' });
      label.textContent = 'alert';
      svg.append(label);
    }
    for (const s of lines) {
      let d = '';
      let pen = false;
      for (const [t, v] of s.points) {
        if (!isNum(v)) {
          pen = false;
          continue;
        }
        d += (pen ? 'L' : 'M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
      }
      if (d) svg.append(svgEl('path', { d, class: s.cls, 'data-series': s.key }));
    }
    plot.onmousemove = (ev) => showTip(plot, lines, opt, ev, { x, w, m, now });
    plot.onmouseleave = () => {
      $('.tip', plot).hidden = true;
    };
  }

  function describe(fig, lines, opt) {
    const caption = $('figcaption', fig).firstChild.textContent.trim();
    const latest = lines
      .map((s) => {
        const last = s.points.length ? s.points[s.points.length - 1][1] : null;
        return s.label + ' ' + opt.fmt(last);
      })
      .join(', ');
    return caption + ' now: ' + (latest || 'no data');
  }

  // The values at the sample nearest the pointer.
  function showTip(plot, lines, opt, ev, geo) {
    const tip = $('.tip', plot);
    const rect = plot.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const t = geo.now - HISTORY_MS + ((px - geo.m.l) / (geo.w - geo.m.l - geo.m.r)) * HISTORY_MS;
    let best = -1;
    let bestDist = Infinity;
    model.history.forEach((s, i) => {
      const dist = Math.abs(s.t - t);
      if (dist < bestDist) {
        bestDist = dist;
        best = i;
      }
    });
    if (best < 0 || bestDist > 5000 || !lines.length) {
      tip.hidden = true;
      return;
    }
    const rows = lines.map((s) => s.label + ': ' + opt.fmt(s.points[best] ? s.points[best][1] : null));
    tip.replaceChildren(el('strong', { text: fmtClock(model.history[best].t) }), ...rows.map((r) => el('div', { text: r })));
    tip.hidden = false;
    tip.style.left = Math.min(px + 12, rect.width - tip.offsetWidth - 4) + 'px';
    tip.style.top = '4px';
  }

  // ---------- clusters and endpoints ----------

  const HEALTH = {
    healthy: { icon: '✓', text: 'healthy', title: 'Passing its health checks' },
    unhealthy: { icon: '✕', text: 'unhealthy', title: 'Failing its health checks: Envoy sends it nothing' },
    unknown: { icon: '?', text: 'unknown', title: 'Not probed, or no verdict yet: Envoy serves it' },
  };

  function trafficFor(name) {
    return model.traffic ? model.traffic.clusters.find((c) => c.name === name) || null : null;
  }

  function renderClusters() {
    const box = $('#clusters');
    if (!model.state) return;
    if (!model.state.clusters.length) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No clusters in the config.' }));
      return;
    }
    keyed(box, model.state.clusters, (c) => c.name, createCluster, updateCluster);
  }

  function createCluster(c) {
    const stat = (field, label, title) =>
      el('div', { class: 'stat', title }, el('dt', { text: label }), el('dd', { 'data-field': field, text: '—' }));
    const art = el(
      'article',
      { class: 'cluster', 'data-cluster': c.name },
      el(
        'header',
        { class: 'cluster-head' },
        el('h3', { text: c.name }),
        el('span', { class: 'chips' }),
        el('span', { class: 'serving' }),
      ),
      el('p', { class: 'cluster-warning', hidden: true }),
      el(
        'dl',
        { class: 'cluster-stats' },
        stat('rps', 'req/s', 'Requests per second to this cluster, summed over every Envoy'),
        stat('success_rate', 'success', 'Share of requests answered without a 5xx'),
        stat('p50_ms', 'p50', 'Median upstream response time (Envoy)'),
        stat('p95_ms', 'p95', '95th percentile upstream response time (Envoy)'),
        stat('p99_ms', 'p99', '99th percentile upstream response time (Envoy)'),
        stat('active_connections', 'conns', 'Open upstream connections'),
        stat('active_requests', 'in flight', 'Requests in flight'),
        stat('retries_per_s', 'retries/s', 'Retries per second'),
        stat('ejections_active', 'ejected', 'Hosts ejected by outlier detection right now'),
      ),
      el(
        'table',
        { class: 'endpoints' },
        el(
          'thead',
          null,
          el(
            'tr',
            null,
            el('th', { scope: 'col', text: 'Endpoint' }),
            el('th', { scope: 'col', text: 'Health' }),
            el('th', { scope: 'col', text: 'Weight', title: 'Weight Envoy uses; the configured weight when they differ' }),
            el('th', { scope: 'col', text: 'Drain' }),
            el('th', {
              scope: 'col',
              class: 'num',
              text: 'Probe latency',
              title: "Smoothed latency of flotilla's health probes. Envoy reports no per-endpoint response times.",
            }),
            el('th', { scope: 'col', class: 'num', text: 'req/s' }),
            el('th', { scope: 'col', class: 'num', text: 'Success' }),
            el('th', { scope: 'col', class: 'num', text: 'In flight', title: "Requests in flight to this endpoint, from Envoy's load reports" }),
          ),
        ),
        el('tbody'),
      ),
    );
    return art;
  }

  function updateCluster(art, c) {
    const chips = [c.policy];
    chips.push(c.health_check ? c.health_check + ' check' : 'not probed');
    if (c.affinity) chips.push(c.affinity + ' affinity');
    setText($('.chips', art), chips.join(' · '));

    const total = c.endpoints.length;
    const unhealthy = c.endpoints.filter((e) => e.health === 'unhealthy' && !e.draining).length;
    const serving = c.endpoints.filter((e) => e.health !== 'unhealthy' && !e.draining).length;
    const servingEl = $('.serving', art);
    setText(servingEl, (serving === 0 ? '⚠ ' : '') + serving + ' of ' + total + ' serving');
    servingEl.className = 'serving' + (serving === 0 ? ' bad' : unhealthy ? ' warn' : '');

    const warning = $('.cluster-warning', art);
    const allFailing = c.health_check && total > 0 && c.endpoints.every((e) => e.health === 'unhealthy');
    warning.hidden = !allFailing;
    if (allFailing) {
      setText(warning, '⚠ Every endpoint fails its check: flotilla fails open and Envoy still serves them all.');
    }

    const t = trafficFor(c.name);
    const set = (field, v, fmt, level) => {
      const dd = $('[data-field="' + field + '"]', art);
      setNumber(dd, t ? v : null, t ? (level === 'bad' ? '⚠ ' : '') + fmt(v) : '—');
      dd.className = level ? level : '';
    };
    art.classList.toggle('no-traffic', !t);
    set('rps', t && t.rps, fmtRate);
    set('success_rate', t && t.success_rate, fmtPct, t && srLevel(t.success_rate));
    set('p50_ms', t && t.p50_ms, fmtMs);
    set('p95_ms', t && t.p95_ms, fmtMs, t && p95Level(t.p95_ms));
    set('p99_ms', t && t.p99_ms, fmtMs);
    set('active_connections', t && t.active_connections, fmtCount);
    set('active_requests', t && t.active_requests, fmtCount);
    set('retries_per_s', t && t.retries_per_s, fmtRate);
    set('ejections_active', t && t.ejections_active, fmtCount, t && t.ejections_active > 0 ? 'warn' : null);

    const byAddr = new Map(((t && t.endpoints) || []).map((e) => [e.address, e]));
    keyed($('tbody', art), c.endpoints, (e) => e.address, createEndpoint, (row, e) =>
      updateEndpoint(row, e, byAddr.get(e.address) || null, t ? t.rps : null),
    );
  }

  function createEndpoint(e) {
    const cell = (field, cls) => el('td', { 'data-field': field, class: cls });
    return el(
      'tr',
      { 'data-endpoint': e.address },
      el('td', { class: 'addr' }, el('span', { class: 'address', text: e.address }), el('span', { class: 'where' }), el('div', { class: 'probe-error' })),
      cell('health'),
      cell('weight'),
      cell('drain'),
      cell('probe_latency_ms', 'num'),
      el('td', { class: 'num' }, el('span', { class: 'share', 'aria-hidden': 'true' }, el('span', { class: 'share-bar' })), el('span', { 'data-field': 'rps' })),
      cell('success_rate', 'num'),
      cell('active_requests', 'num'),
    );
  }

  function updateEndpoint(row, e, t, clusterRps) {
    row.dataset.health = e.health;
    row.dataset.draining = String(e.draining);
    const where = [];
    if (e.zone) where.push('zone ' + e.zone);
    if (e.priority) where.push('priority ' + e.priority);
    if (e.source === 'registration') where.push('registered');
    setText($('.where', row), where.join(' · '));

    const h = HEALTH[e.health] || HEALTH.unknown;
    const healthCell = $('[data-field="health"]', row);
    healthCell.replaceChildren(el('span', { class: 'badge health-' + e.health, title: h.title, text: h.icon + ' ' + h.text }));
    healthCell.dataset.value = e.health;

    const weight = $('[data-field="weight"]', row);
    const changed = e.weight !== e.configured_weight;
    setText(weight, changed ? e.weight + ' (config ' + e.configured_weight + ')' : String(e.weight));
    weight.classList.toggle('changed', changed);
    weight.title = changed ? 'Envoy uses weight ' + e.weight + '; the config says ' + e.configured_weight : '';
    weight.dataset.value = String(e.weight);

    const drain = $('[data-field="drain"]', row);
    drain.replaceChildren(e.draining ? el('span', { class: 'badge draining', text: '⇣ draining', title: 'Draining: no new requests' }) : el('span', { class: 'muted', text: 'no' }));
    drain.dataset.value = String(e.draining);

    const p = e.probe;
    const latency = $('[data-field="probe_latency_ms"]', row);
    setNumber(latency, p ? p.smoothed_latency_ms : null, p ? fmtMs(p.smoothed_latency_ms) : '—');
    latency.title = p
      ? 'Probe latency, smoothed (last ' + fmtMs(p.last_latency_ms) + ', probed ' + fmtAgo(p.last_probe) + ')'
      : 'Not probed';
    const err = $('.probe-error', row);
    const showError = p && p.last_error && (e.health === 'unhealthy' || p.consecutive_failures > 0);
    setText(err, showError ? p.last_error + (p.consecutive_failures > 1 ? ' (' + p.consecutive_failures + ' in a row)' : '') : '');
    err.title = showError ? p.last_error : '';

    const rps = $('[data-field="rps"]', row);
    setNumber(rps, t ? t.rps : null, t ? fmtRate(t.rps) : '—');
    const share = isNum(clusterRps) && clusterRps > 0 && t && isNum(t.rps) ? t.rps / clusterRps : 0;
    $('.share-bar', row).style.width = Math.round(share * 100) + '%';
    const sr = $('[data-field="success_rate"]', row);
    const srBad = t && srLevel(t.success_rate) === 'bad';
    setNumber(sr, t ? t.success_rate : null, t ? (srBad ? '⚠ ' : '') + fmtPct(t.success_rate) : '—');
    sr.className = 'num ' + ((t && srLevel(t.success_rate)) || '');
    setNumber($('[data-field="active_requests"]', row), t ? t.active_requests : null, t ? fmtCount(t.active_requests) : '—');
  }

  // ---------- Envoys ----------

  function totalNacks(n) {
    return Object.values(n.types || {}).reduce((a, t) => a + (t.nacks || 0), 0);
  }

  function lastNack(n) {
    let last = null;
    for (const [type, t] of Object.entries(n.types || {})) {
      if (t.last_nack && (!last || t.last_nack.at > last.at)) last = Object.assign({ type }, t.last_nack);
    }
    return last;
  }

  function renderNodes() {
    const box = $('#nodes');
    if (!model.nodes) return;
    if (!model.nodes.length) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No Envoy is connected.' }));
      return;
    }
    let list = $('ul.nodes', box);
    if (!list) {
      list = el('ul', { class: 'nodes' });
      box.replaceChildren(list);
    }
    // One entry per client: two Envoys claiming one node id are two entries.
    keyed(list, model.nodes, (n) => n.node_id + '#' + (n.stream_id ?? ''), createNode, updateNode);
  }

  function createNode(n) {
    return el(
      'li',
      { class: 'node', 'data-node': n.node_id },
      el('div', { class: 'node-head' }, el('strong', { class: 'node-id', text: n.node_id }), el('span', { class: 'sync' })),
      el('div', { class: 'node-meta muted' }),
      el('div', { class: 'nack', hidden: true }),
    );
  }

  function updateNode(li, n) {
    const sync = $('.sync', li);
    sync.replaceChildren(
      n.in_sync
        ? el('span', { class: 'badge in-sync', text: '✓ in sync', title: 'Running snapshot ' + n.snapshot_version })
        : el('span', { class: 'badge syncing', text: '⟳ syncing', title: 'Being brought to snapshot ' + n.snapshot_version }),
    );
    li.dataset.inSync = String(n.in_sync);
    const nacks = totalNacks(n);
    const meta = [
      'fleet ' + n.fleet,
      n.mode + (n.ads ? ' ADS' : ' (' + n.streams + ' streams)'),
      'Envoy ' + (n.envoy_version || '?'),
      'connected ' + fmtAgo(n.connected_since),
      nacks + (nacks === 1 ? ' NACK' : ' NACKs'),
    ];
    if (n.acked_revision) meta.push('acked revision ' + n.acked_revision.slice(0, 12));
    if (n.peer && model.nodes.filter((x) => x.node_id === n.node_id).length > 1) {
      meta.push('from ' + n.peer + ' (node id shared by several clients)');
    }
    setText($('.node-meta', li), meta.join(' · '));
    const versions = Object.entries(n.types || {})
      .map(([type, t]) => type.toUpperCase() + ' acked ' + shortVersion(t.acked_version) + ', sent ' + shortVersion(t.sent_version))
      .join('\n');
    li.title = versions;
    const last = lastNack(n);
    const box = $('.nack', li);
    box.hidden = !last;
    if (last) {
      // A current rejection traced to the YAML says which line; an older one, Envoy's words.
      const traced = (n.rejections || [])[0];
      setText(box, traced
        ? '⚠ ' + traced.type.toUpperCase() + ' ' + traced.summary + ' (' + fmtAgo(traced.at) + ')'
        : '⚠ ' + last.type.toUpperCase() + ' version ' + shortVersion(last.version) + ' rejected ' + fmtAgo(last.at) + ': ' + last.message);
    }
  }

  // ---------- certificates (never keys: the API has none to give) ----------

  const DAY_MS = 86400 * 1000;

  function renderCertificates() {
    const certs = model.certificates || [];
    $('#certificates-panel').hidden = !certs.length;
    keyed(
      $('#certificates'),
      certs,
      (c) => c.secret,
      (c) =>
        el(
          'li',
          { class: 'node certificate', 'data-secret': c.secret },
          el('div', { class: 'node-head' }, el('strong', { class: 'cert-subject' }), el('span', { class: 'expiry' })),
          el('div', { class: 'node-meta muted' }),
        ),
      (li, c) => {
        setText($('.cert-subject', li), c.subject || c.file);
        const left = c.not_after * 1000 - Date.now();
        const days = Math.floor(left / DAY_MS);
        const level = left <= 0 ? 'bad' : left < 2 * DAY_MS ? 'bad' : left < 14 * DAY_MS ? 'warn' : 'ok';
        $('.expiry', li).replaceChildren(
          el('span', {
            class: 'badge ' + (level === 'ok' ? 'in-sync' : 'syncing'),
            text: left <= 0 ? 'expired' : days + ' days left',
            title: 'not after ' + new Date(c.not_after * 1000).toISOString(),
          }),
        );
        li.dataset.level = level;
        const users = c.listeners.map((l) => 'listener ' + l).concat(c.clusters.map((k) => 'cluster ' + k));
        const meta = [c.kind, 'SANs ' + (c.sans.join(', ') || '—'), 'issuer ' + c.issuer, 'sha256 ' + c.sha256.slice(0, 16) + '…', users.join(', ')];
        setText($('.node-meta', li), meta.join(' · '));
        li.title = c.file + (c.key_file ? ' (key ' + c.key_file + ')' : '');
      },
    );
  }

  // ---------- mesh ----------

  /** One row per mesh service: instances (healthy of all), identity expiry, calls allowed/denied. */
  function renderMesh() {
    const services = (model.mesh && model.mesh.services) || [];
    $('#mesh-panel').hidden = !services.length;
    keyed(
      $('#mesh'),
      services,
      (s) => s.name,
      (s) =>
        el(
          'li',
          { class: 'node mesh-service', 'data-service': s.name },
          el('div', { class: 'node-head' }, el('strong', { class: 'service-name' }), el('span', { class: 'instances' })),
          el('div', { class: 'node-meta muted' }),
        ),
      (li, s) => {
        setText($('.service-name', li), s.name + ' (' + s.protocol + ')');
        const healthy = s.instances.filter((i) => i.health !== 'unhealthy' && !i.draining).length;
        const level = s.port === null ? 'ok' : healthy === 0 ? 'bad' : healthy < s.instances.length ? 'warn' : 'ok';
        li.dataset.level = level;
        $('.instances', li).replaceChildren(
          el('span', {
            class: 'badge ' + (level === 'ok' ? 'in-sync' : 'syncing'),
            text: s.port === null ? 'caller only' : healthy + '/' + s.instances.length + ' instances',
          }),
        );
        const id = s.identity;
        const meta = [
          id ? id.spiffe_id : 'no certificate yet',
          id ? 'expires ' + new Date(id.not_after * 1000).toISOString() : null,
          'allowed ' + fmtCount(s.calls_in.allowed),
          'denied ' + fmtCount(s.calls_in.denied),
          s.calls.length ? 'calls ' + s.calls.map((c) => c.service + (c.local_port ? ' :' + c.local_port : ' (vip)')).join(', ') : null,
        ].filter(Boolean);
        setText($('.node-meta', li), meta.join(' · '));
        li.dataset.denied = String(s.calls_in.denied);
        li.title = id ? 'renewal due ' + new Date(id.renew_at * 1000).toISOString() : '';
      },
    );
  }

  // ---------- events ----------

  const EVENT_ICON = {
    reload: '↻',
    nack: '⚠',
    health: '♥',
    drain: '⇣',
    weight: '⚖',
    registration: '+',
    node: '⇄',
  };

  function renderEvents() {
    const status = $('#events-status');
    const problem = model.eventsProblem || (model.events.length ? null : 'No events yet.');
    status.hidden = !problem;
    setText(status, problem || '');
    const newest = model.events.slice(-100).reverse();
    keyed(
      $('#events'),
      newest,
      (e) => String(e.id),
      (e) => {
        const where = [e.cluster, e.endpoint, e.node].filter(Boolean).join(' · ');
        const bad =
          e.kind === 'nack' ||
          /unhealthy|invalid|rejected|fail|disconnected/i.test(e.message || '');
        return el(
          'li',
          { class: 'event event-' + e.kind + (bad ? ' bad' : ''), 'data-kind': e.kind, 'data-id': e.id },
          el('time', { datetime: new Date(e.at).toISOString(), title: new Date(e.at).toString(), text: fmtClock(e.at) }),
          el('span', { class: 'kind', text: (EVENT_ICON[e.kind] || '•') + ' ' + e.kind }),
          el('span', { class: 'message', text: e.message }),
          where ? el('span', { class: 'where muted', text: where }) : null,
        );
      },
      () => {},
    );
  }

  window.addEventListener('resize', () => {
    if (model.polls) renderCharts();
  });
  poll();
})();
