// complaintflow dashboard. Plain JS, no build step; charts with the vendored uPlot.
// Every panel exposes its values on stable data-testid / data-key / data-value attributes
// so tests can read them from the DOM.
(() => {
  'use strict';

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const svgEl = (tag, attrs) => {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    return e;
  };
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  const fmtInt = (v) => (num(v) === null ? '—' : Math.round(v).toLocaleString('en-US'));
  const fmtPct = (v, d = 1) => (num(v) === null ? '—' : v.toFixed(d) + '%');
  const fmtNum = (v, d = 3) => (num(v) === null ? '—' : v.toFixed(d));
  const raw = (v) => (v === null || v === undefined ? '' : String(v));

  const DEFAULT_CFG = { refresh_ms: 5000, top_n: 10, table_rows: 20, high_priorities: ['P1', 'P2'] };
  const state = { cfg: DEFAULT_CFG, timer: null, refreshes: 0, inFlight: false, history: null, charts: {}, productKeys: '' };

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-store' });
    if (!r.ok) throw new Error(url + ' answered ' + r.status);
    return r.json();
  }

  // ---------------------------------------------------------------- refresh loop
  async function init() {
    try { state.cfg = Object.assign({}, DEFAULT_CFG, await getJSON('/api/ui-config')); } catch (e) { console.error(e); }
    const sel = $('#refresh');
    const ms = String(state.cfg.refresh_ms);
    if (![...sel.options].some((o) => o.value === ms)) sel.appendChild(el('option', { value: ms }, (state.cfg.refresh_ms / 1000) + ' s'));
    sel.value = ms;
    sel.addEventListener('change', schedule);
    $('#volume-product').addEventListener('change', drawVolume);
    $('#volume-range').addEventListener('change', drawVolume);
    $('#map-metric').addEventListener('change', () => state.lastStates && drawMap(state.lastStates));
    window.addEventListener('resize', resizeCharts);
    buildMap();
    await refresh();
    schedule();
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    const ms = Number($('#refresh').value);
    state.timer = ms > 0 ? setInterval(refresh, ms) : null;
  }

  async function refresh() {
    if (state.inFlight) return;
    state.inFlight = true;
    const c = state.cfg;
    const top = c.top_n;
    const pri = encodeURIComponent((c.high_priorities || []).join(','));
    try {
      const [health, summary, prod, issue, comp, states, recent, models, history, series, alerts, dataflow, quality] = await Promise.all([
        getJSON('/health'),
        getJSON('/api/summary'),
        getJSON('/api/aggregates?by=product&top=' + top),
        getJSON('/api/aggregates?by=issue&top=' + top),
        getJSON('/api/aggregates?by=company&top=' + top),
        getJSON('/api/aggregates?by=state'),
        highPriority(c, pri),
        getJSON('/api/models'),
        getJSON('/api/history'),
        getJSON('/api/metrics/series'),
        getJSON('/api/alerts'),
        getJSON('/api/dataflow'),
        getJSON('/api/model/quality'),
      ]);
      drawHeader(health, summary);
      drawAlerts(alerts);
      drawKpis(summary);
      state.history = history;
      drawVolume();
      state.lastStates = states;
      drawMap(states);
      drawBars('#bars-product', prod);
      drawBars('#bars-issue', issue);
      drawBars('#bars-company', comp);
      drawTable(recent);
      drawModels(models, series);
      drawSystem(series);
      drawDataflow(dataflow);
      drawQuality(quality);
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      document.body.dataset.asOf = raw(summary.as_of);
      document.body.dataset.loaded = '1';
    } catch (e) {
      console.error(e);
      const s = $('#status');
      s.textContent = 'offline';
      s.dataset.status = 'offline';
    } finally {
      state.inFlight = false;
    }
  }

  // Live quality: one row per model version, as /api/model/quality answers it.
  function drawQuality(q) {
    const t = $('#quality-table');
    const body = t.querySelector('tbody');
    body.replaceChildren();
    t.dataset.enabled = q.enabled ? '1' : '0';
    const note = $('#quality-note');
    if (!q.enabled) {
      t.dataset.versions = '0';
      note.textContent = 'no outcomes read';
      return;
    }
    const d = q.drift || {};
    const psi = (name, v) => (num(v) === null ? '' : ' · ' + name + ' PSI ' + v.toFixed(3));
    note.textContent = fmtInt(q.outcomes_read) + ' outcome records, ' + fmtInt(q.label_changes) + ' label changes' +
      (q.as_of === null || q.as_of === undefined ? '' : ' · as of epoch ' + q.as_of) +
      psi('score', d.score_psi) + psi('product', d.product_psi) + psi('state', d.state_psi);
    const versions = Object.keys(q.versions).sort();
    t.dataset.versions = String(versions.length);
    for (const v of versions) {
      const m = q.versions[v];
      const cell = (key, value, d = 3) => el('td', { 'data-key': key, 'data-value': raw(value) }, fmtNum(value, d));
      const tr = el('tr', { 'data-version': v });
      tr.appendChild(el('td', {}, v));
      tr.appendChild(el('td', { 'data-key': 'labelled', 'data-value': raw(m.labelled) }, fmtInt(m.labelled)));
      tr.appendChild(cell('auc', m.auc));
      tr.appendChild(cell('pr_auc', m.pr_auc));
      tr.appendChild(cell('precision', m.precision));
      tr.appendChild(cell('recall', m.recall));
      tr.appendChild(cell('f1', m.f1));
      tr.appendChild(cell('accuracy', m.accuracy));
      tr.appendChild(cell('ece', m.ece));
      const act = el('td', { 'data-key': 'action', 'data-value': m.action, class: 'action action-' + String(m.action).toLowerCase(), title: m.reason },
        m.action + (m.priority ? ' ' + m.priority : ''));
      tr.appendChild(act);
      body.appendChild(tr);
    }
  }

  // The table's rows: the latest decisions with a high priority, plus escalated ones whatever
  // their priority, newest first.
  async function highPriority(c, pri) {
    const n = c.table_rows;
    const [byPri, esc] = await Promise.all([
      getJSON('/api/predictions/recent?limit=' + n + (pri ? '&priority=' + pri : '')),
      getJSON('/api/predictions/recent?limit=' + n + '&escalated=true'),
    ]);
    const seen = new Set();
    return byPri.concat(esc)
      .sort((a, b) => (b.decided_ms || 0) - (a.decided_ms || 0))
      .filter((d) => { const k = d.complaint_id + '\u0001' + d.model_version; if (seen.has(k)) return false; seen.add(k); return true; })
      .slice(0, n);
  }

  // ---------------------------------------------------------------- header, alerts, KPIs
  function drawHeader(health, summary) {
    const s = $('#status');
    s.textContent = health.status;
    s.dataset.status = health.status;
    s.title = health.message || (health.workers + ' workers × ' + health.processes + ' processes, up ' + Math.round(health.uptime_secs) + ' s');
    $('#source').textContent = health.source;
    $('#as-of').textContent = summary.as_of === null ? '—' : String(summary.as_of);
    $('#updated').textContent = new Date().toLocaleTimeString();
  }

  function drawAlerts(a) {
    const box = $('#alerts');
    const list = $('#alert-list');
    list.replaceChildren();
    for (const x of a.active) {
      const since = new Date(x.since_ms).toLocaleTimeString();
      const li = el('li', { 'data-key': x.name, 'data-state': x.state, 'data-value': raw(x.value), 'data-threshold': raw(x.threshold), 'data-since': raw(x.since_ms) },
        x.state.toUpperCase() + ' ' + x.name + ' since ' + since + ' (value ' + fmtNum(x.value, 2) + ', threshold ' + x.threshold + '): ' + x.message);
      list.appendChild(li);
    }
    const firing = a.active.filter((x) => x.state === 'firing').length;
    box.dataset.count = String(a.active.length);
    box.dataset.state = firing ? 'firing' : a.active.length ? 'pending' : 'ok';
    $('#alerts-title').textContent = !a.enabled ? 'Alerts: off' : a.active.length ? 'Alerts (' + a.active.length + ')' : 'No active alerts';
    // Every rule with its latest value, so the strip always shows what is being watched.
    const rules = $('#alert-rules');
    rules.replaceChildren();
    for (const r of a.rules || []) {
      const span = el('span', { class: 'rule', 'data-key': r.name, 'data-state': r.state, 'data-value': raw(r.value), 'data-enabled': String(r.enabled) },
        r.name + ' ' + (r.enabled ? (r.value === null ? 'n/a' : fmtNum(r.value, r.value >= 100 ? 0 : 3)) + ' / ' + r.threshold : 'off'));
      rules.appendChild(span);
    }
  }

  function setKpi(testid, value, text, cardId, status) {
    const v = document.querySelector('[data-testid="' + testid + '"]');
    v.dataset.value = raw(value);
    v.textContent = text;
    if (cardId) $(cardId).dataset.status = status;
  }

  function drawKpis(s) {
    setKpi('kpi-processed', s.processed, fmtInt(s.processed), '#card-processed', s.processed > 0 ? 'green' : 'idle');
    $('#kpi-processed-foot').textContent = fmtInt(s.decisions) + ' decisions + ' + fmtInt(s.dead_letters) + ' dead letters';
    setKpi('kpi-rate', s.rate_per_min, fmtInt(s.rate_per_min), '#card-rate', s.status.rate);
    const ch = document.querySelector('[data-testid="kpi-rate-change"]');
    ch.dataset.value = raw(s.rate_change_pct);
    ch.className = num(s.rate_change_pct) === null ? '' : s.rate_change_pct >= 0 ? 'up' : 'down';
    ch.textContent = num(s.rate_change_pct) === null ? '—' : (s.rate_change_pct >= 0 ? '▲ ' : '▼ ') + Math.abs(s.rate_change_pct).toFixed(1) + '%';
    if (!s.input_waiting) ch.textContent += ' (no input waiting)';
    setKpi('kpi-escalation-pct', s.escalation_pct, fmtPct(s.escalation_pct), '#card-escalation', s.status.escalation);
    $('#kpi-escalation-foot').textContent = fmtInt(s.escalations) + ' of ' + fmtInt(s.decisions) + ' decisions';
    setKpi('kpi-mean-score', s.mean_score, fmtNum(s.mean_score), '#card-mean-score', s.status.mean_score);
    setKpi('kpi-dead-letters', s.dead_letters, fmtInt(s.dead_letters), '#card-dead', s.status.dead_letters);
    $('#kpi-dead-foot').textContent = fmtPct(s.dead_letter_pct, 2) + ' of records processed';
  }

  // ---------------------------------------------------------------- charts (uPlot)
  function chartWidth(id) {
    const w = document.getElementById(id).clientWidth;
    return Math.max(200, w || 600);
  }

  function upsertChart(id, series, data, height) {
    let ch = state.charts[id];
    if (!ch) {
      const opts = {
        width: chartWidth(id),
        height: height,
        series: [{}].concat(series),
        scales: { x: { time: true } },
        axes: [{}, { size: 64 }],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      };
      ch = new uPlot(opts, data, document.getElementById(id));
      state.charts[id] = ch;
    } else {
      ch.setData(data);
    }
    return ch;
  }

  function resizeCharts() {
    for (const [id, ch] of Object.entries(state.charts)) ch.setSize({ width: chartWidth(id), height: ch.height });
  }

  const monthStart = (ym) => {
    const [y, m] = ym.split('-').map(Number);
    return Date.UTC(y, m - 1, 1) / 1000;
  };
  const nextMonth = (ym) => {
    let [y, m] = ym.split('-').map(Number);
    m += 1;
    if (m > 12) { m = 1; y += 1; }
    return y + '-' + String(m).padStart(2, '0');
  };
  const validMonth = (ym) => typeof ym === 'string' && /^\d{4}-\d{2}$/.test(ym);

  function drawVolume() {
    const h = state.history;
    if (!h) return;
    // Product selector: products by total volume, kept when the set does not change.
    const totals = new Map();
    for (const p of h.training.concat(h.live)) totals.set(p.product, (totals.get(p.product) || 0) + p.count);
    const products = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map((e) => e[0]);
    const sel = $('#volume-product');
    const key = products.join('\u0001');
    if (key !== state.productKeys) {
      const cur = sel.value;
      sel.replaceChildren(el('option', { value: '' }, 'all products'));
      for (const p of products) sel.appendChild(el('option', { value: p }, p));
      sel.value = products.includes(cur) ? cur : '';
      state.productKeys = key;
    }
    const product = sel.value;
    const sum = (pts) => {
      const m = new Map();
      for (const p of pts) if (validMonth(p.month) && (!product || p.product === product)) m.set(p.month, (m.get(p.month) || 0) + p.count);
      return m;
    };
    const train = sum(h.training);
    const live = sum(h.live);
    const all = [...new Set([...train.keys(), ...live.keys()])].sort();
    let months = [];
    if (all.length) for (let m = all[0]; m <= all[all.length - 1]; m = nextMonth(m)) months.push(m);
    const range = Number($('#volume-range').value);
    if (range > 0 && months.length > range) months = months.slice(months.length - range);
    const span = (m) => { const ks = [...m.keys()].sort(); return ks.length ? [ks[0], ks[ks.length - 1]] : null; };
    const ts = span(train), ls = span(live);
    const col = (m, s) => months.map((k) => (s && k >= s[0] && k <= s[1] ? m.get(k) || 0 : null));
    const tv = col(train, ts), lv = col(live, ls);
    const box = $('#volume-chart');
    const tot = (arr) => arr.reduce((a, v) => a + (v || 0), 0);
    box.dataset.trainingTotal = String(tot(tv));
    box.dataset.liveTotal = String(tot(lv));
    box.dataset.trainingPoints = String(tv.filter((v) => v !== null).length);
    box.dataset.livePoints = String(lv.filter((v) => v !== null).length);
    box.dataset.months = String(months.length);
    box.dataset.product = product;
    $('#training-source').textContent = h.training_source ? '(' + h.training_source + ')' : '';
    upsertChart('volume-chart', [
      { label: 'training', stroke: '#5b7fa6', width: 2, fill: 'rgba(91,127,166,0.15)', points: { show: false } },
      { label: 'live', stroke: '#e8731a', width: 2, dash: [6, 4], points: { show: true, size: 5 } },
    ], [months.map(monthStart), tv, lv], 260);
  }

  function drawSystem(s) {
    const x = s.t_ms.map((t) => t / 1000);
    const nn = (a) => a.filter((v) => v !== null).length;
    const last = (a) => { for (let i = a.length - 1; i >= 0; i--) if (a[i] !== null) return a[i]; return null; };
    const put = (id, arrs, latestText, latest) => {
      document.getElementById(id).dataset.points = String(Math.max(...arrs.map(nn)));
      const l = document.querySelector('[data-testid="' + id + '-latest"]');
      l.dataset.value = raw(latest);
      l.textContent = latestText;
    };
    upsertChart('sys-throughput', [{ label: '/min', stroke: '#5b7fa6', width: 2, points: { show: false } }], [x, s.throughput_per_min], 140);
    put('sys-throughput', [s.throughput_per_min], fmtInt(last(s.throughput_per_min)), last(s.throughput_per_min));
    upsertChart('sys-latency', [
      { label: 'p50', stroke: '#5b7fa6', width: 2, points: { show: false } },
      { label: 'p99', stroke: '#d23c3c', width: 2, points: { show: false } },
    ], [x, s.epoch_latency_p50_ms, s.epoch_latency_p99_ms], 140);
    const p50 = last(s.epoch_latency_p50_ms), p99 = last(s.epoch_latency_p99_ms);
    put('sys-latency', [s.epoch_latency_p50_ms, s.epoch_latency_p99_ms], fmtNum(p50, 1) + ' / ' + fmtNum(p99, 1), p99);
    upsertChart('sys-lag', [{ label: 'records', stroke: '#7a4fa3', width: 2, points: { show: false } }], [x, s.consumer_lag], 140);
    const lag = last(s.consumer_lag);
    put('sys-lag', [s.consumer_lag], lag === null ? 'n/a (no Kafka source)' : fmtInt(lag), lag);
    upsertChart('sys-deadletters', [{ label: '%', stroke: '#d23c3c', width: 2, points: { show: false } }], [x, s.dead_letter_pct], 140);
    put('sys-deadletters', [s.dead_letter_pct], fmtPct(last(s.dead_letter_pct), 2), last(s.dead_letter_pct));
    $('#sys-note').textContent = s.t_ms.length + ' samples every ' + s.interval_ms + ' ms; windows ' + s.window_secs + ' s';
  }

  // ---------------------------------------------------------------- bars, table
  function drawBars(sel, ans) {
    const box = $(sel);
    box.dataset.asOf = raw(ans.as_of);
    box.dataset.rows = String(ans.rows.length);
    box.replaceChildren();
    if (!ans.rows.length) { box.appendChild(el('div', { class: 'empty' }, 'no decisions yet')); return; }
    const max = Math.max(...ans.rows.map((r) => r.count));
    for (const r of ans.rows) {
      const row = el('div', { class: 'row bar', 'data-key': r.key, 'data-value': String(r.count), 'data-escalations': String(r.escalations), 'data-rate': String(r.escalation_rate) });
      row.title = r.key + ': ' + r.count + ' decisions, ' + r.escalations + ' escalated, mean score ' + r.mean_score.toFixed(3);
      row.appendChild(el('div', { class: 'key' }, r.key));
      const track = el('div', { class: 'track' });
      const fill = el('div', { class: 'fill' });
      fill.style.width = (max > 0 ? (100 * r.count) / max : 0).toFixed(1) + '%';
      track.appendChild(fill);
      row.appendChild(track);
      row.appendChild(el('div', { class: 'num' }, fmtInt(r.count)));
      row.appendChild(el('div', { class: 'rate' }, fmtPct(100 * r.escalation_rate)));
      box.appendChild(row);
    }
  }

  function drawTable(rows) {
    const tb = $('#priority-table tbody');
    tb.replaceChildren();
    $('#priority-table').dataset.rows = String(rows.length);
    $('#table-note').textContent = 'priorities ' + (state.cfg.high_priorities || []).join(', ') + ' and escalated, newest first';
    if (!rows.length) {
      const tr = el('tr', { class: 'empty-row' });
      tr.appendChild(el('td', { colspan: '10', class: 'empty' }, 'no high-priority decisions yet'));
      tb.appendChild(tr);
      return;
    }
    for (const d of rows) {
      const tr = el('tr', { 'data-key': raw(d.complaint_id), 'data-priority': raw(d.priority), 'data-escalate': raw(d.escalate) });
      const td = (field, text, value) => { const c = el('td', { 'data-field': field, 'data-value': raw(value === undefined ? text : value), title: text }, text); tr.appendChild(c); return c; };
      td('decided', d.decided_ms ? new Date(d.decided_ms).toLocaleTimeString() : '—', d.decided_ms);
      td('complaint_id', raw(d.complaint_id));
      const p = td('priority', '', d.priority);
      p.appendChild(el('span', { class: 'pri pri-' + raw(d.priority) }, raw(d.priority)));
      td('queue', raw(d.queue));
      td('product', raw(d.product));
      td('company', raw(d.company));
      td('state', raw(d.state));
      td('score', fmtNum(d.score), d.score);
      td('model_version', raw(d.model_version));
      const rc = td('reasons', '', (d.reasons || []).join('; '));
      rc.className = 'reasons';
      for (const r of d.reasons || []) rc.appendChild(el('span', { class: 'chip' }, r));
      tb.appendChild(tr);
    }
  }

  // ---------------------------------------------------------------- model panel
  function drawModels(m, series) {
    const prod = m.production;
    document.querySelector('[data-testid="model-production"]').textContent = prod || 'none';
    const pv = m.versions.find((v) => v.version === prod);
    const auc = pv ? pv.test_auc : null;
    const a = document.querySelector('[data-testid="model-auc"]');
    a.dataset.value = raw(auc);
    a.textContent = fmtNum(auc);
    const psiArr = series.psi || [];
    const psi = psiArr.length ? psiArr[psiArr.length - 1] : null;
    const p = document.querySelector('[data-testid="model-psi"]');
    p.dataset.value = raw(psi);
    p.textContent = psi === null ? 'n/a' : psi.toFixed(3);
    const vv = document.querySelector('[data-testid="model-versions"]');
    vv.dataset.value = String(m.versions.length);
    vv.textContent = m.versions.map((v) => v.version + (v.stage ? ' (' + v.stage + ')' : '')).join(', ') || '—';

    // A/B split, when more than one version serves.
    const ab = $('#ab-split');
    ab.dataset.live = String(m.live.length);
    ab.replaceChildren();
    ab.hidden = m.live.length < 2;
    if (m.live.length >= 2) {
      ab.appendChild(el('div', { class: 'muted small' }, 'A/B split of live traffic'));
      const bar = el('div', { class: 'split' });
      const colors = ['#5b7fa6', '#e8731a', '#7a4fa3', '#1e9e5a'];
      m.live.forEach((l, i) => {
        const seg = el('div', { 'data-key': l.version, 'data-value': String(l.share), 'data-predictions': String(l.predictions) },
          l.version + ' ' + (100 * l.share).toFixed(0) + '% · ' + fmtInt(l.predictions));
        seg.style.width = (100 * l.share).toFixed(1) + '%';
        seg.style.background = colors[i % colors.length];
        bar.appendChild(seg);
      });
      ab.appendChild(bar);
    }

    // Score distribution: bars per live version (share of its scores per bin), training as a line.
    const box = $('#score-dist');
    box.replaceChildren();
    const W = 400, H = 150, pad = 18;
    const svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, 'data-testid': 'score-dist-svg' });
    const bins = 10;
    const bw = (W - 2 * pad) / bins;
    const props = (h) => { const n = h.counts.reduce((s, c) => s + c, 0); return h.counts.slice(0, bins).map((c) => (n ? c / n : 0)); };
    const liveProps = m.live.map((l) => props(l.scores));
    const trainProps = m.training_scores ? props(m.training_scores) : null;
    const maxP = Math.max(0.01, ...liveProps.flat(), ...(trainProps || []));
    const y = (v) => H - pad - (v / maxP) * (H - 2 * pad);
    const colors = ['#5b7fa6', '#e8731a', '#7a4fa3', '#1e9e5a'];
    let total = 0;
    m.live.forEach((l, vi) => {
      const w = (bw - 4) / Math.max(1, m.live.length);
      l.scores.counts.slice(0, bins).forEach((c, i) => {
        total += c;
        const v = liveProps[vi][i];
        const r = svgEl('rect', { class: 'bin', x: pad + i * bw + 2 + vi * w, y: y(v), width: Math.max(1, w - 1), height: Math.max(0, H - pad - y(v)),
          fill: colors[vi % colors.length], 'data-version': l.version, 'data-key': String(i), 'data-value': String(c) });
        const t = svgEl('title'); t.textContent = l.version + ' ' + (i / 10).toFixed(1) + '–' + ((i + 1) / 10).toFixed(1) + ': ' + c;
        r.appendChild(t);
        svg.appendChild(r);
      });
    });
    if (trainProps) {
      let d = '';
      trainProps.forEach((v, i) => { d += (i ? 'L' : 'M') + (pad + i * bw) + ' ' + y(v) + ' L' + (pad + (i + 1) * bw) + ' ' + y(v) + ' '; });
      svg.appendChild(svgEl('path', { d: d, fill: 'none', stroke: '#1d2733', 'stroke-width': 1.5, 'stroke-dasharray': '3 2', 'data-testid': 'training-scores' }));
    }
    for (let i = 0; i <= bins; i += 2) {
      const t = svgEl('text', { x: pad + i * bw, y: H - 4, 'font-size': 10, 'text-anchor': 'middle', fill: '#66707c' });
      t.textContent = (i / 10).toFixed(1);
      svg.appendChild(t);
    }
    box.dataset.total = String(total);
    box.appendChild(svg);
    const log = m.retraining || [];
    $('#retrain-log').textContent = log.length ? 'retraining: ' + log[log.length - 1] : '';
  }

  // ---------------------------------------------------------------- dataflow graph
  // One block per dataflow: its operators (not the dataflow scope itself) as boxes, in
  // columns by longest path from the sources (back edges of cycles ignored), edges as curves.
  const fmtRate = (v) => {
    if (num(v) === null) return '—';
    if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (v >= 1e3) return (v / 1e3).toFixed(1) + 'k';
    return v.toFixed(v >= 10 ? 0 : 1);
  };
  const short = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

  function layers(nodes, edges) {
    const preds = new Map(nodes.map((n) => [n.id, []]));
    for (const e of edges) preds.get(e.to).push(e.from);
    const layer = new Map();
    const onStack = new Set();
    const visit = (id) => {
      if (layer.has(id)) return layer.get(id);
      onStack.add(id);
      let l = 0;
      for (const p of preds.get(id) || []) if (!onStack.has(p)) l = Math.max(l, visit(p) + 1);
      onStack.delete(id);
      layer.set(id, l);
      return l;
    };
    for (const n of nodes) visit(n.id);
    return layer;
  }

  function drawDataflow(v) {
    const box = $('#dataflow');
    box.replaceChildren();
    const ops = v.operators || [];
    const byId = new Map(ops.map((o) => [o.id, o]));
    const dataflows = [...new Set(ops.map((o) => o.dataflow))].sort((a, b) => a - b);
    let drawnOps = 0, drawnEdges = 0;
    const W = 168, H = 50, GX = 46, GY = 12, PAD = 8;
    for (const d of dataflows) {
      const nodes = ops.filter((o) => o.dataflow === d && o.address.length >= 2).sort((a, b) => a.id - b.id);
      if (!nodes.length) continue;
      const ids = new Set(nodes.map((n) => n.id));
      const edges = (v.edges || []).filter((e) => e.dataflow === d && e.from !== e.to && ids.has(e.from) && ids.has(e.to));
      const layer = layers(nodes, edges);
      const cols = [];
      for (const n of nodes) { const l = layer.get(n.id); (cols[l] = cols[l] || []).push(n); }
      const pos = new Map();
      cols.forEach((col, x) => col.forEach((n, y) => pos.set(n.id, [PAD + x * (W + GX), PAD + y * (H + GY)])));
      const width = PAD * 2 + cols.length * (W + GX) - GX;
      const height = PAD * 2 + Math.max(...cols.map((c) => c.length)) * (H + GY) - GY;
      const root = ops.find((o) => o.dataflow === d && o.address.length === 1);
      const block = el('div', { class: 'df-block', 'data-dataflow': String(d) });
      block.appendChild(el('div', { class: 'df-title' },
        (root ? root.name : 'Dataflow') + ' ' + d + ' · ' + nodes.length + ' operators · busy ' + fmtPct(root ? root.busy_pct : null)));
      const svg = svgEl('svg', { width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, 'data-testid': 'dataflow-svg-' + d });
      const maxRate = Math.max(1, ...edges.map((e) => e.records_per_s || 0));
      for (const e of edges) {
        const [x1, y1] = pos.get(e.from), [x2, y2] = pos.get(e.to);
        const sx = x1 + W, sy = y1 + H / 2, tx = x2, ty = y2 + H / 2;
        const back = tx <= sx;
        const mx = back ? Math.max(sx, tx + W) + 30 : (sx + tx) / 2;
        const dpath = back
          ? 'M' + sx + ' ' + sy + ' C' + mx + ' ' + sy + ' ' + (tx - 30) + ' ' + ty + ' ' + tx + ' ' + ty
          : 'M' + sx + ' ' + sy + ' C' + mx + ' ' + sy + ' ' + mx + ' ' + ty + ' ' + tx + ' ' + ty;
        const w = 1 + 4 * Math.log1p(e.records_per_s || 0) / Math.log1p(maxRate);
        const p = svgEl('path', { class: 'edge', d: dpath, 'stroke-width': w.toFixed(2),
          'data-from': String(e.from), 'data-to': String(e.to), 'data-records': String(e.records), 'data-records-per-s': String(e.records_per_s) });
        const t = svgEl('title');
        t.textContent = byId.get(e.from).name + ' → ' + byId.get(e.to).name + ': ' + fmtInt(e.records) + ' records, ' + fmtRate(e.records_per_s) + '/s';
        p.appendChild(t);
        svg.appendChild(p);
        drawnEdges += 1;
      }
      for (const n of nodes) {
        const [x, y] = pos.get(n.id);
        const source = n.records_in === 0 && n.batches === 0;
        const rate = source ? n.records_out_per_s : n.records_in_per_s;
        const busy = num(n.busy_pct) === null ? 0 : n.busy_pct;
        const g = svgEl('g', { class: 'op' + (n.scope ? ' scope' : ''), transform: 'translate(' + x + ',' + y + ')',
          'data-id': String(n.id), 'data-name': n.name, 'data-records-per-s': String(rate), 'data-busy-pct': String(busy),
          'data-records-in': String(n.records_in), 'data-records-out': String(n.records_out), 'data-layer': String(layer.get(n.id)) });
        g.appendChild(svgEl('rect', { width: W, height: H, rx: 5, fill: mix('#ffffff', '#f4a259', Math.min(1, busy / 50)) }));
        const name = svgEl('text', { class: 'name', x: 8, y: 18 });
        name.textContent = short(n.name, 22);
        g.appendChild(name);
        const stats = svgEl('text', { class: 'stats', x: 8, y: 36 });
        stats.textContent = fmtRate(rate) + ' rec/s · busy ' + busy.toFixed(1) + '%';
        g.appendChild(stats);
        const t = svgEl('title');
        t.textContent = n.name + ' [' + n.address.join(', ') + ']: ' + fmtInt(n.records_in) + ' records in, ' + fmtInt(n.records_out) + ' out, '
          + fmtInt(n.batches) + ' batches, busy ' + fmtNum(n.busy_ms / 1000, 2) + ' s over ' + fmtInt(n.schedules) + ' schedules' + (n.shut_down ? ' (shut down)' : '');
        g.appendChild(t);
        svg.appendChild(g);
        drawnOps += 1;
      }
      const wrap = el('div', { class: 'df-scroll' });
      wrap.appendChild(svg);
      block.appendChild(wrap);
      box.appendChild(block);
    }
    if (!drawnOps) box.appendChild(el('div', { class: 'empty' }, 'no dataflow yet'));
    box.dataset.operators = String(drawnOps);
    box.dataset.edges = String(drawnEdges);
    $('#dataflow-note').textContent = v.workers + ' workers' + (num(v.interval_ms) === null ? '' : '; rates over ' + (v.interval_ms / 1000).toFixed(1) + ' s');
  }

  // ---------------------------------------------------------------- US tile map
  // One square per state (50 states + DC, PR below): a tile grid needs no geographic data.
  const TILES = {
    AK: [0, 0], ME: [11, 0],
    WI: [6, 1], VT: [10, 1], NH: [11, 1],
    WA: [1, 2], ID: [2, 2], MT: [3, 2], ND: [4, 2], MN: [5, 2], IL: [6, 2], MI: [7, 2], NY: [9, 2], MA: [10, 2],
    OR: [1, 3], NV: [2, 3], WY: [3, 3], SD: [4, 3], IA: [5, 3], IN: [6, 3], OH: [7, 3], PA: [8, 3], NJ: [9, 3], CT: [10, 3], RI: [11, 3],
    CA: [1, 4], UT: [2, 4], CO: [3, 4], NE: [4, 4], MO: [5, 4], KY: [6, 4], WV: [7, 4], VA: [8, 4], MD: [9, 4], DE: [10, 4],
    AZ: [2, 5], NM: [3, 5], KS: [4, 5], AR: [5, 5], TN: [6, 5], NC: [7, 5], SC: [8, 5], DC: [9, 5],
    OK: [4, 6], LA: [5, 6], MS: [6, 6], AL: [7, 6], GA: [8, 6],
    HI: [0, 7], TX: [4, 7], FL: [9, 7], PR: [11, 7],
  };
  const TILE = 44;

  function buildMap() {
    const svg = svgEl('svg', { viewBox: '0 0 ' + (12 * TILE) + ' ' + (8 * TILE), 'data-testid': 'state-map' });
    for (const [code, [cx, cy]] of Object.entries(TILES)) {
      const g = svgEl('g', { class: 'state', 'data-key': code, 'data-value': '', 'data-count': '0', transform: 'translate(' + cx * TILE + ',' + cy * TILE + ')' });
      g.appendChild(svgEl('rect', { width: TILE, height: TILE, rx: 4, fill: '#e6e9ed' }));
      const t = svgEl('text', { x: TILE / 2, y: TILE / 2 + 4, 'text-anchor': 'middle', fill: '#1d2733' });
      t.textContent = code;
      g.appendChild(t);
      g.appendChild(svgEl('title'));
      svg.appendChild(g);
    }
    $('#map').appendChild(svg);
  }

  function mix(a, b, t) {
    const p = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const [x, y] = [p(a), p(b)];
    return 'rgb(' + x.map((v, i) => Math.round(v + (y[i] - v) * t)).join(',') + ')';
  }

  function drawMap(ans) {
    const metric = $('#map-metric').value;
    const svg = document.querySelector('[data-testid="state-map"]');
    svg.dataset.asOf = raw(ans.as_of);
    svg.dataset.metric = metric;
    const by = new Map(ans.rows.map((r) => [r.key, r]));
    const vals = ans.rows.filter((r) => TILES[r.key]).map((r) => (metric === 'rate' ? r.escalation_rate : r.count));
    const lo = metric === 'rate' && vals.length ? Math.min(...vals) : 0;
    const hi = vals.length ? Math.max(...vals) : 1;
    const [c0, c1] = metric === 'rate' ? ['#fee5d9', '#a50f15'] : ['#deebf7', '#08519c'];
    for (const g of svg.querySelectorAll('g.state')) {
      const r = by.get(g.dataset.key);
      const rect = g.querySelector('rect');
      const text = g.querySelector('text');
      const title = g.querySelector('title');
      if (!r) {
        g.dataset.value = '';
        g.dataset.count = '0';
        g.dataset.escalations = '0';
        rect.setAttribute('fill', '#e6e9ed');
        text.setAttribute('fill', '#1d2733');
        title.textContent = g.dataset.key + ': no complaints';
        continue;
      }
      const v = metric === 'rate' ? r.escalation_rate : r.count;
      const t = hi > lo ? (v - lo) / (hi - lo) : 1;
      g.dataset.value = String(r.escalation_rate);
      g.dataset.count = String(r.count);
      g.dataset.escalations = String(r.escalations);
      rect.setAttribute('fill', mix(c0, c1, t));
      text.setAttribute('fill', t > 0.55 ? '#fff' : '#1d2733');
      title.textContent = r.key + ': ' + r.count + ' complaints, ' + (100 * r.escalation_rate).toFixed(1) + '% escalated, mean score ' + r.mean_score.toFixed(3);
    }
    const leg = $('#map-legend');
    leg.replaceChildren();
    const fmt = (v) => (metric === 'rate' ? (100 * v).toFixed(1) + '%' : fmtInt(v));
    leg.appendChild(el('span', null, fmt(lo)));
    const grad = el('span', { class: 'grad' });
    grad.style.background = 'linear-gradient(90deg,' + c0 + ',' + c1 + ')';
    leg.appendChild(grad);
    leg.appendChild(el('span', null, fmt(hi) + (metric === 'rate' ? ' escalated' : ' complaints')));
    const other = ans.rows.filter((r) => !TILES[r.key]);
    $('#map-other').textContent = other.length
      ? 'Not on the map: ' + other.map((r) => r.key + ' ' + r.count + ' (' + (100 * r.escalation_rate).toFixed(1) + '%)').join(', ')
      : '';
    $('#map-other').dataset.count = String(other.reduce((s, r) => s + r.count, 0));
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
