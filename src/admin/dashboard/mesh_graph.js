// The mesh as a graph on the dashboard: services as boxes, each `calls:` entry an arrow from
// caller to callee labelled with the caller's requests per second, success rate and the
// calls the callee refused to it. Plain JavaScript and hand-drawn SVG like the rest of the
// page; it polls /api/v1/mesh/graph on its own (a page without a mesh shows nothing).
// Every value from the server is inserted as text, never as markup.
'use strict';

(() => {
  const POLL_MS = 2000;
  const REQUEST_TIMEOUT_MS = 4000;
  // Beyond this many services the drawing is unreadable: the panel says so and points at the
  // JSON instead.
  const MAX_DRAWN = 60;
  const BOX_W = 150;
  const BOX_H = 44;
  const COL_GAP = 120;
  const ROW_GAP = 26;
  const PAD = 12;
  const ALERT_SUCCESS = 0.95; // as the charts: failure rate above 5 %
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (sel) => document.querySelector(sel);

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, String(v));
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const fmtRate = (v) => (!isNum(v) ? '—' : v >= 100 ? String(Math.round(v)) : v.toFixed(1));
  const fmtPct = (v) => (!isNum(v) ? '—' : v >= 1 ? '100%' : (v * 100).toFixed(1) + '%');

  /**
   * Columns by depth: a service that nothing calls is in column 0, a callee one column right
   * of its deepest caller (cycles are cut after as many rounds as there are services).
   */
  function layout(nodes, edges) {
    const depth = new Map(nodes.map((n) => [n.service, 0]));
    for (let round = 0; round < nodes.length; round++) {
      let moved = false;
      for (const e of edges) {
        const d = (depth.get(e.from) || 0) + 1;
        if (depth.has(e.to) && d > depth.get(e.to) && d < nodes.length) {
          depth.set(e.to, d);
          moved = true;
        }
      }
      if (!moved) break;
    }
    const columns = [];
    for (const n of nodes) {
      const d = depth.get(n.service);
      (columns[d] = columns[d] || []).push(n.service);
    }
    const used = columns.filter(Boolean);
    const column = new Map();
    used.forEach((col, c) => col.forEach((name) => column.set(name, c)));
    // Calls that do not go to the next column arc over the boxes: room above for the highest.
    const spans = edges
      .filter((e) => column.has(e.from) && column.has(e.to))
      .map((e) => column.get(e.to) - column.get(e.from))
      .filter((s) => s !== 1)
      .map((s) => Math.abs(s));
    const top = PAD + 18 + (spans.length ? arcRise(Math.max(...spans)) + 14 : 0);
    const at = new Map();
    used.forEach((col, c) => {
      col.forEach((name, r) => {
        at.set(name, { x: PAD + c * (BOX_W + COL_GAP), y: top + r * (BOX_H + ROW_GAP), column: c });
      });
    });
    const rows = Math.max(1, ...used.map((c) => c.length));
    return {
      at,
      width: PAD * 2 + used.length * BOX_W + Math.max(0, used.length - 1) * COL_GAP,
      height: top + rows * BOX_H + (rows - 1) * ROW_GAP + PAD,
    };
  }

  /** How far above the boxes the arc of a call over `span` columns rises. */
  const arcRise = (span) => 22 + 10 * span;

  function level(e) {
    if (e.denied > 0) return 'bad';
    if (isNum(e.success_rate) && e.success_rate < ALERT_SUCCESS) return 'bad';
    return e.rps > 0 ? 'ok' : 'idle';
  }

  function draw(graph) {
    const panel = $('#mesh-graph-panel');
    const svg = $('#mesh-graph');
    const note = $('#mesh-graph-note');
    const nodes = graph.nodes || [];
    const edges = graph.edges || [];
    panel.hidden = !nodes.length;
    if (!nodes.length) return;
    if (nodes.length > MAX_DRAWN) {
      svg.replaceChildren();
      svg.setAttribute('height', '0');
      note.hidden = false;
      note.textContent =
        nodes.length + ' services: too many to draw; /api/v1/mesh/graph has the graph as JSON.';
      return;
    }
    note.hidden = true;
    const { at, width, height } = layout(nodes, edges);
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('width', String(width));
    svg.setAttribute('height', String(height));
    const parts = [
      svgEl('defs', {}),
      svgEl('text', { x: PAD, y: PAD + 4, class: 'graph-hint' },
        'arrows: calls · req/s over ' + graph.window_seconds + ' s · success · denied'),
    ];
    const marker = svgEl('marker', {
      id: 'mesh-arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
    });
    marker.append(svgEl('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow-head' }));
    parts[0].append(marker);
    for (const e of edges) {
      const a = at.get(e.from);
      const b = at.get(e.to);
      if (!a || !b) continue;
      // To the next column: a straight arrow between facing sides. Otherwise an arc from the
      // top of one box to the top of the other, rising with the distance.
      const span = b.column - a.column;
      let x1, y1, x2, y2, cx, cy, lx, ly;
      if (span === 1) {
        [x1, y1, x2, y2] = [a.x + BOX_W, a.y + BOX_H / 2, b.x, b.y + BOX_H / 2];
        [cx, cy] = [(x1 + x2) / 2, (y1 + y2) / 2];
        [lx, ly] = [cx, Math.min(y1, y2) - 6];
      } else {
        const rise = arcRise(Math.abs(span) || 1);
        const shift = span > 0 ? 10 : -10; // a → b and b → a do not share their ends
        [x1, y1, x2, y2] = [a.x + BOX_W / 2 + shift, a.y, b.x + BOX_W / 2 - shift, b.y];
        [cx, cy] = [(x1 + x2) / 2 + (span === 0 ? BOX_W : 0), Math.min(y1, y2) - 2 * rise];
        [lx, ly] = [(x1 + 2 * cx + x2) / 4, Math.min(y1, y2) - rise - 4];
      }
      const lvl = level(e);
      const g = svgEl('g', {
        class: 'edge edge-' + lvl,
        'data-from': e.from,
        'data-to': e.to,
        'data-rps': e.rps,
        'data-success': isNum(e.success_rate) ? e.success_rate : '',
        'data-denied': e.denied,
        'data-via': e.via,
      });
      g.append(
        svgEl('path', {
          d: 'M ' + x1 + ' ' + y1 + ' Q ' + cx + ' ' + cy + ' ' + x2 + ' ' + y2,
          'marker-end': 'url(#mesh-arrow)',
        }),
      );
      const label =
        fmtRate(e.rps) + ' req/s · ' + fmtPct(e.success_rate) + (e.denied ? ' · ' + e.denied + ' denied' : '');
      g.append(svgEl('text', { x: lx, y: ly, 'text-anchor': 'middle', class: 'edge-label' }, label));
      g.append(svgEl('title', {}, e.from + ' → ' + e.to + ' (via ' + e.via + '): ' + label));
      parts.push(g);
    }
    for (const n of nodes) {
      const p = at.get(n.service);
      const denied = n.calls_in.denied;
      const g = svgEl('g', {
        class: 'gnode' + (denied ? ' gnode-denied' : ''),
        'data-service': n.service,
        'data-allowed': n.calls_in.allowed,
        'data-denied': denied,
      });
      g.append(svgEl('rect', { x: p.x, y: p.y, width: BOX_W, height: BOX_H, rx: 5 }));
      g.append(svgEl('text', { x: p.x + 8, y: p.y + 17, class: 'gnode-name' }, n.service));
      const sub = (n.vip ? n.vip + ' · ' : '') + 'in ' + n.calls_in.allowed + ' ✓ ' + denied + ' ✗';
      g.append(svgEl('text', { x: p.x + 8, y: p.y + 34, class: 'gnode-sub' }, sub));
      g.append(svgEl('title', {}, n.service + ': calls in allowed ' + n.calls_in.allowed + ', denied ' + denied));
      parts.push(g);
    }
    svg.replaceChildren(...parts);
  }

  async function poll() {
    try {
      const r = await fetch('/api/v1/mesh/graph', {
        cache: 'no-store',
        headers: { accept: 'application/json' },
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      if (r.ok) {
        const g = await r.json();
        if (g && Array.isArray(g.nodes) && Array.isArray(g.edges)) draw(g);
      }
    } catch (_) {
      // The main poll reports the connection; the graph keeps what it showed.
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
