// stirgate web console: plain JavaScript, no build step. It talks to the
// admin API (/api/v1) with the token and name the operator typed at login,
// kept in this tab's sessionStorage. Everything that comes from the API is
// put into the page as text (textContent, input values), never as HTML.
'use strict';

(() => {
  const POLL_MS = 2000; // live decisions
  const HITS_MS = 30000; // rule hit charts
  const RECORDS_LIMIT = 100;
  const TRACE_LIMIT = 1000;
  const VIEWS = ['decisions', 'hits', 'explain', 'trace', 'complaint', 'lists', 'audit'];
  const TOKEN_KEY = 'stirgate.token';
  const ACTOR_KEY = 'stirgate.actor';

  const $ = (sel, root) => (root || document).querySelector(sel);

  // el builds an element; children are nodes or strings (as text).
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k === 'title' || k === 'type' || k === 'colspan' || k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, String(v));
      else throw new Error('el: unsupported property ' + k);
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function setStatus(id, text, isError) {
    const p = $(id);
    p.textContent = text || '';
    p.classList.toggle('error', !!isError);
  }

  // ------------------------------------------------------------------
  // Session and API

  const session = {
    get token() { return sessionStorage.getItem(TOKEN_KEY) || ''; },
    get actor() { return sessionStorage.getItem(ACTOR_KEY) || ''; },
    set(token, actor) {
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(ACTOR_KEY, actor);
    },
    clear() {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(ACTOR_KEY);
    },
  };

  class APIError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  // The API lives beside the console: /console/ -> /api/v1/.
  function apiURL(path) {
    return new URL('../api/v1/' + path, document.baseURI).toString();
  }

  function headers(extra) {
    const h = Object.assign({ Authorization: 'Bearer ' + session.token }, extra || {});
    if (session.actor) h['X-Actor'] = session.actor;
    return h;
  }

  // api calls /api/v1/<path>; it returns the parsed JSON (null for 204),
  // or the Response itself with raw. Errors carry the API's {"error"} text.
  async function api(path, opts) {
    const o = opts || {};
    const init = { method: o.method || 'GET', headers: headers({ Accept: o.accept || 'application/json' }), cache: 'no-store', credentials: 'omit' };
    if (o.body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(o.body);
    }
    let resp;
    try {
      resp = await fetch(apiURL(path), init);
    } catch (e) {
      throw new APIError(0, 'stirgate did not answer: ' + e.message);
    }
    if (resp.status === 401) {
      signOut('The admin token was refused (401): sign in again.');
      throw new APIError(401, 'admin token refused');
    }
    if (!resp.ok) {
      let body = null;
      let msg = resp.status + ' ' + resp.statusText;
      try {
        body = await resp.json();
        if (body && typeof body.error === 'string') msg = body.error + ' (' + resp.status + ')';
      } catch (_) { /* not JSON */ }
      throw new APIError(resp.status, msg, body);
    }
    if (o.raw) return resp;
    if (resp.status === 204) return null;
    const text = await resp.text();
    return text ? JSON.parse(text) : null;
  }

  function errText(e) {
    return e instanceof APIError ? e.message : String(e && e.message ? e.message : e);
  }

  // ------------------------------------------------------------------
  // Formatting

  // fmtTime shows an RFC 3339 time as "2026-12-07 10:02:00Z" (UTC).
  function fmtTime(s, ms) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d.getTime())) return String(s);
    return d.toISOString().replace('T', ' ').slice(0, ms ? 23 : 19) + 'Z';
  }

  // parseTime reads what an operator types: RFC 3339, or a date and time
  // without a zone, taken as UTC. It returns an RFC 3339 string or throws.
  function parseTime(s, what) {
    let v = s.trim().replace(' ', 'T');
    if (!v) return '';
    if (/^\d{4}-\d\d-\d\d$/.test(v)) v += 'T00:00:00';
    if (!/(Z|[+-]\d\d:?\d\d)$/i.test(v)) v += 'Z';
    const d = new Date(v);
    if (isNaN(d.getTime())) throw new Error(what + ': "' + s + '" is not a time (use 2026-12-07T10:02:00Z)');
    return d.toISOString();
  }

  // decisionOf tells whether stirgate forwarded the call (the final answer
  // came from downstream) or answered it itself, as the API's decision
  // filter does.
  function decisionOf(r) {
    if (r.decision) return r.decision;
    if (r.stage) return r.stage === 'downstream' ? 'forwarded' : 'rejected';
    return r.next_hop ? 'forwarded' : 'rejected';
  }

  function text(v) {
    return v === undefined || v === null ? '' : String(v);
  }

  // ------------------------------------------------------------------
  // Login

  const ASCII = /^[\x21-\x7e]+$/;
  const NAME = /^[\x20-\x7e]{1,64}$/;

  async function onLogin(ev) {
    ev.preventDefault();
    const token = $('#token').value.trim();
    const actor = $('#actor').value.trim();
    const err = $('#login-error');
    err.hidden = true;
    if (!ASCII.test(token)) return showLoginError('The token is one word of printable ASCII characters.');
    if (!NAME.test(actor)) return showLoginError('Your name: 1 to 64 printable ASCII characters.');
    $('#login').disabled = true;
    try {
      // Any answer but 401 means the token was accepted.
      const resp = await fetch(apiURL('audit?limit=1'), {
        headers: { Authorization: 'Bearer ' + token, 'X-Actor': actor, Accept: 'application/json' },
        cache: 'no-store', credentials: 'omit',
      });
      if (resp.status === 401) return showLoginError('The admin token was refused.');
      if (resp.status === 404) return showLoginError('This stirgate serves no /api/v1 (is admin.token_file set?).');
    } catch (e) {
      return showLoginError('stirgate did not answer: ' + e.message);
    } finally {
      $('#login').disabled = false;
    }
    session.set(token, actor);
    $('#token').value = '';
    showApp();
  }

  function showLoginError(msg) {
    const err = $('#login-error');
    err.textContent = msg;
    err.hidden = false;
  }

  function signOut(msg) {
    session.clear();
    stopTimers();
    $('#app').hidden = true;
    $('#session').hidden = true;
    $('#login-view').hidden = false;
    if (msg) showLoginError(msg);
    $('#token').focus();
  }

  function showApp() {
    $('#login-view').hidden = true;
    $('#login-error').hidden = true;
    $('#app').hidden = false;
    $('#session').hidden = false;
    $('#whoami').textContent = session.actor;
    if (!$('#c-reporter').value) $('#c-reporter').value = session.actor;
    route();
  }

  // ------------------------------------------------------------------
  // Views: #<view>?<params> in the location's hash.

  let current = '';
  const onShow = {};

  function route() {
    if (!session.token) {
      signOut();
      return;
    }
    const h = location.hash.replace(/^#\/?/, '');
    const q = h.indexOf('?');
    let name = q < 0 ? h : h.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : h.slice(q + 1));
    if (!VIEWS.includes(name)) name = 'decisions';
    current = name;
    stopTimers();
    for (const v of VIEWS) {
      $('#view-' + v).hidden = v !== name;
      const tab = $('#tab-' + v);
      if (v === name) tab.setAttribute('aria-current', 'page');
      else tab.removeAttribute('aria-current');
    }
    onShow[name](params);
  }

  const timers = { records: 0, hits: 0 };
  function stopTimers() {
    clearTimeout(timers.records);
    clearTimeout(timers.hits);
    timers.records = timers.hits = 0;
  }

  // ------------------------------------------------------------------
  // Recent decisions

  let recordsSeq = 0;

  function recordFilters() {
    const q = new URLSearchParams({ limit: String(RECORDS_LIMIT) });
    const add = (k, id) => {
      const v = $(id).value.trim();
      if (v) q.set(k, v);
    };
    add('realm', '#f-realm');
    add('decision', '#f-decision');
    add('rule', '#f-rule');
    add('number', '#f-number');
    return q;
  }

  async function pollRecords() {
    clearTimeout(timers.records);
    if (current !== 'decisions' || !session.token) return;
    const seq = ++recordsSeq;
    if (!document.hidden) {
      try {
        const data = await api('records?' + recordFilters());
        if (seq !== recordsSeq) return; // a newer poll (filters changed) wins
        const recs = (data && data.records) || [];
        renderRecords($('#records tbody'), recs, recordRow);
        setStatus('#records-status', recs.length + ' calls, newest first; updated ' + fmtTime(new Date().toISOString()));
      } catch (e) {
        if (seq !== recordsSeq) return;
        setStatus('#records-status', errText(e), true);
      }
    }
    if (seq === recordsSeq && current === 'decisions' && $('#live').checked && session.token) {
      timers.records = setTimeout(pollRecords, POLL_MS);
    }
  }

  function renderRecords(tbody, recs, rowFn) {
    tbody.replaceChildren(...recs.map(rowFn));
  }

  function explainLink(r) {
    const q = new URLSearchParams({ call_id: text(r.call_id) });
    if (r.at) q.set('at', r.at);
    return '#explain?' + q;
  }

  // clickable makes a row open the call's explain view (mouse or keyboard).
  function clickable(tr, r) {
    tr.tabIndex = 0;
    tr.classList.add('link');
    const go = () => { location.hash = explainLink(r); };
    tr.addEventListener('click', go);
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') go(); });
    return tr;
  }

  function statusCell(r) {
    const d = decisionOf(r);
    return el('td', { class: d === 'rejected' ? 'rej' : 'ok', text: text(r.status) });
  }

  function recordRow(r) {
    const d = decisionOf(r);
    const tr = el('tr', { 'data-call-id': text(r.call_id), 'data-at': text(r.at), 'data-decision': d, title: 'Call-ID ' + text(r.call_id) },
      el('td', { class: 'nowrap', text: fmtTime(r.at) }),
      el('td', { text: r.realm }),
      el('td', { text: r.direction }),
      el('td', { class: 'num', text: r.orig || r.from_tn }),
      el('td', { class: 'num', text: r.dest }),
      el('td', { text: r.customer }),
      el('td', { text: r.source }),
      el('td', { text: r.attest }),
      el('td', { text: r.verstat }),
      statusCell(r),
      el('td', { class: d === 'rejected' ? 'rej' : 'ok', text: d }),
      el('td', { text: r.rule }),
      el('td', { class: 'wrap', text: r.reason }));
    return clickable(tr, r);
  }

  onShow.decisions = () => { pollRecords(); };

  // ------------------------------------------------------------------
  // Rule hits

  const charts = {};
  const PALETTE = ['#c0392b', '#2471a3', '#229954', '#d68910', '#7d3c98', '#17a589', '#a04000', '#2e4053', '#b03a2e', '#1f618d'];

  async function loadHits() {
    clearTimeout(timers.hits);
    if (current !== 'hits') return;
    try {
      const [hour, day] = await Promise.all([api('rules/hits?window=1h'), api('rules/hits?window=24h')]);
      if (current !== 'hits') return;
      const h = drawHits('hour', 'chart-hour', hour, 3600, 60);
      const d = drawHits('day', 'chart-day', day, 86400, 3600);
      renderHitsSummary(h, d);
      setStatus('#hits-status', 'updated ' + fmtTime(new Date().toISOString()) + (typeof Chart === 'undefined' ? ' (charting library missing: totals only)' : ''));
    } catch (e) {
      setStatus('#hits-status', errText(e), true);
    }
    if (current === 'hits') {
      clearTimeout(timers.hits); // a second load that ran meanwhile keeps one timer
      timers.hits = setTimeout(loadHits, HITS_MS);
    }
  }

  // drawHits puts one window's series on a stacked bar chart with every
  // bucket of the window on the axis (buckets without hits are 0) and
  // returns the totals per rule.
  function drawHits(key, canvasID, data, span, defBucket) {
    const bucket = (data && data.bucket_seconds) || defBucket;
    const series = (data && data.series) || [];
    const n = Math.max(1, Math.round(span / bucket));
    let end = Math.floor(Date.now() / 1000 / bucket) * bucket;
    for (const s of series) {
      for (const p of s.points || []) {
        const t = Math.floor(Date.parse(p.t) / 1000 / bucket) * bucket;
        if (t > end) end = t; // the server's clock is ahead of ours
      }
    }
    const start = end - (n - 1) * bucket;
    const labels = [];
    for (let i = 0; i < n; i++) {
      const iso = new Date((start + i * bucket) * 1000).toISOString();
      labels.push(bucket < 86400 ? iso.slice(11, 16) : iso.slice(5, 10));
    }
    const totals = {};
    const datasets = series.map((s, k) => {
      const values = new Array(n).fill(0);
      let total = 0;
      for (const p of s.points || []) {
        const i = Math.floor((Date.parse(p.t) / 1000 - start) / bucket);
        const c = Number(p.calls) || 0;
        if (i >= 0 && i < n) values[i] += c;
        total += c;
      }
      totals[text(s.rule)] = total;
      const colour = PALETTE[k % PALETTE.length];
      return { label: text(s.rule), data: values, backgroundColor: colour, borderColor: colour };
    });
    if (typeof Chart !== 'undefined') {
      if (charts[key]) {
        charts[key].data.labels = labels;
        charts[key].data.datasets = datasets;
        charts[key].update('none');
      } else {
        charts[key] = new Chart($('#' + canvasID), {
          type: 'bar',
          data: { labels, datasets },
          options: {
            animation: false,
            responsive: true,
            maintainAspectRatio: false,
            scales: {
              x: { stacked: true, ticks: { autoSkip: true, maxRotation: 0 } },
              y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'calls' } },
            },
            plugins: { legend: { position: 'bottom' } },
          },
        });
      }
    }
    return totals;
  }

  function renderHitsSummary(hour, day) {
    const rules = Array.from(new Set([...Object.keys(day), ...Object.keys(hour)])).sort();
    const tbody = $('#hits-summary tbody');
    if (!rules.length) {
      tbody.replaceChildren(el('tr', {}, el('td', { class: 'muted', colspan: 3, text: 'No rule hits in the last day.' })));
      return;
    }
    tbody.replaceChildren(...rules.map((r) => el('tr', { 'data-rule': r },
      el('td', { text: r }), el('td', { class: 'num', text: hour[r] || 0 }), el('td', { class: 'num', text: day[r] || 0 }))));
  }

  onShow.hits = () => { loadHits(); };

  // ------------------------------------------------------------------
  // Explain

  // The record's fields in reading order; fields the API adds later are
  // shown after them.
  const RECORD_FIELDS = [
    ['at', 'Time (UTC)'], ['call_id', 'Call-ID'], ['realm', 'Realm'], ['direction', 'Direction'],
    ['source', 'Source'], ['transport', 'Transport'], ['customer', 'Customer / trunk'],
    ['from_tn', 'From number'], ['pai_tn', 'P-Asserted-Identity number'], ['to_tn', 'To number'], ['orig', 'Calling number (orig)'],
    ['dest', 'Called number (dest)'], ['request_uri', 'Request-URI user part'], ['attest', 'Attestation'],
    ['origid', 'origid'], ['x5u', 'x5u'], ['iat', 'iat'], ['verstat', 'verstat'],
    ['verify_reason', 'Verification failure'], ['next_hop', 'Next hop'], ['status', 'Final status'],
    ['stage', 'Deciding stage'], ['rule', 'Deciding rule'], ['reason', 'Reason'], ['policy', 'Rule inputs'],
    ['ring_ms', 'Ring (ms)'], ['cancel_ms', 'Cancel (ms)'], ['answer_ms', 'Answer (ms)'],
    ['duration_ms', 'Duration (ms)'], ['identity', 'Identity header'],
  ];

  function kvRows(dl, pairs) {
    dl.replaceChildren();
    for (const [key, label, value] of pairs) {
      dl.append(el('dt', { text: label }), el('dd', { 'data-field': key, class: key === 'identity' || key === 'policy' ? 'mono wrap' : '', text: value }));
    }
  }

  async function loadExplain(callID, at) {
    $('#explain').hidden = true;
    if (!callID) {
      setStatus('#explain-status', 'Give a Call-ID, or select a call in Decisions or Traceback.');
      return;
    }
    const q = new URLSearchParams({ call_id: callID });
    if (at) q.set('at', at);
    setStatus('#explain-status', 'loading…');
    let data;
    try {
      data = await api('records/explain?' + q);
    } catch (e) {
      setStatus('#explain-status', e.status === 404 ? 'No stored call has Call-ID ' + callID + '.' : errText(e), true);
      return;
    }
    const r = (data && data.record) || {};
    const pairs = [];
    const seen = new Set();
    for (const [k, label] of RECORD_FIELDS) {
      seen.add(k);
      let v = r[k];
      // Zero is "none" for the times of events that did not happen and
      // for iat without an Identity header.
      if (v === undefined || v === null || v === '' || (v === 0 && (k.endsWith('_ms') || k === 'iat') && k !== 'duration_ms')) continue;
      if (k === 'at') v = fmtTime(v, true);
      pairs.push([k, label, text(v)]);
    }
    for (const [k, v] of Object.entries(r)) {
      if (!seen.has(k) && v !== null && v !== '' && typeof v !== 'object') pairs.push([k, k, text(v)]);
    }
    kvRows($('#explain-record'), pairs);
    const d = decisionOf(r);
    const verdict = $('#explain-decision');
    verdict.textContent = d + ' (' + text(r.status) + (r.rule ? ', rule ' + r.rule : '') + (r.stage ? ', stage ' + r.stage : '') + ')';
    verdict.className = d === 'rejected' ? 'rej' : 'ok';
    verdict.setAttribute('data-decision', d);

    const steps = (data && data.steps) || [];
    $('#explain-steps').replaceChildren(...(steps.length ? steps.map((s) => el('li', { class: 'step-' + text(s.decision), 'data-stage': text(s.stage) },
      el('strong', { text: s.stage }), ' ', el('span', { class: 'badge', text: s.decision }), ' ', el('span', { text: s.detail }))) :
      [el('li', { class: 'muted', text: 'No stages recorded.' })]));

    const hits = (data && data.hits) || [];
    $('#explain-hits tbody').replaceChildren(...(hits.length ? hits.map((h) => el('tr', { 'data-rule': text(h.rule) },
      el('td', { text: h.rule }), el('td', { text: h.mode }), el('td', { text: h.action }), el('td', { class: 'wrap', text: h.matched }), el('td', { text: h.entry }))) :
      [el('tr', {}, el('td', { class: 'muted', colspan: 5, text: 'No rule hit.' }))]));

    $('#explain').hidden = false;
    setStatus('#explain-status', '');
  }

  function onExplainSubmit(ev) {
    ev.preventDefault();
    let at = '';
    try {
      at = parseTime($('#explain-at').value, 'At');
    } catch (e) {
      setStatus('#explain-status', e.message, true);
      return;
    }
    const q = new URLSearchParams({ call_id: $('#explain-call-id').value.trim() });
    if (at) q.set('at', at);
    const target = '#explain?' + q;
    if (location.hash === target) loadExplain(q.get('call_id'), at);
    else location.hash = target;
  }

  onShow.explain = (params) => {
    const callID = params.get('call_id') || '';
    const at = params.get('at') || '';
    $('#explain-call-id').value = callID;
    $('#explain-at').value = at;
    loadExplain(callID, at);
  };

  async function onDryRun(ev) {
    ev.preventDefault();
    const invite = $('#dry-invite').value.replace(/\r?\n/g, '\r\n').replace(/^\s+/, '');
    const body = { realm: $('#dry-realm').value, source: $('#dry-source').value.trim(), invite: invite.endsWith('\r\n\r\n') ? invite : invite.replace(/(\r\n)*$/, '\r\n\r\n') };
    setStatus('#dry-status', 'running…');
    try {
      const res = await api('explain', { method: 'POST', body });
      const pairs = [['decision', 'Decision', text(res.decision)], ['code', 'Code', text(res.code)], ['reason', 'Reason', text(res.reason)],
        ['stage', 'Stage', text(res.stage)], ['orig', 'orig', text(res.orig)], ['dest', 'dest', text(res.dest)],
        ['customer', 'Customer', text(res.customer)], ['attest', 'Attestation', text(res.attest)], ['verstat', 'verstat', text(res.verstat)],
        ['notes', 'Notes', (res.notes || []).map(text).join('\n')]];
      kvRows($('#dry-result'), pairs.filter((p) => p[2] !== ''));
      const fw = $('#dry-forwarded');
      fw.textContent = text(res.forwarded);
      fw.hidden = !res.forwarded;
      setStatus('#dry-status', '');
    } catch (e) {
      $('#dry-result').replaceChildren();
      $('#dry-forwarded').hidden = true;
      setStatus('#dry-status', errText(e), true);
    }
  }

  // ------------------------------------------------------------------
  // Traceback

  function traceQuery() {
    const q = new URLSearchParams();
    const add = (k, id) => {
      const v = $(id).value.trim();
      if (v) q.set(k, v);
    };
    add('orig', '#t-orig');
    add('dest', '#t-dest');
    add('origid', '#t-origid');
    add('call_id', '#t-callid');
    const at = parseTime($('#t-at').value, 'Time');
    if (at) {
      const minutes = Number($('#t-window').value) || 5;
      if (minutes < 1 || minutes > 1440) throw new Error('Window: 1 to 1440 minutes');
      const t = Date.parse(at);
      q.set('from', new Date(t - minutes * 60000).toISOString());
      q.set('to', new Date(t + minutes * 60000).toISOString());
    }
    if (![...q.keys()].length) throw new Error('Give at least a number, a time, an origid or a Call-ID.');
    return q;
  }

  function traceRow(r) {
    const d = decisionOf(r);
    const tr = el('tr', { 'data-call-id': text(r.call_id), 'data-at': text(r.at), 'data-decision': d },
      el('td', { class: 'nowrap', text: fmtTime(r.at, true) }),
      el('td', { text: r.source }),
      el('td', { text: r.transport }),
      el('td', { text: r.customer }),
      el('td', { class: 'num', text: r.orig || r.from_tn }),
      el('td', { class: 'num', text: r.dest }),
      el('td', { text: r.attest }),
      el('td', { class: 'mono', text: r.origid }),
      el('td', { text: r.verstat }),
      statusCell(r),
      el('td', { class: d === 'rejected' ? 'rej' : 'ok', text: d }),
      el('td', { class: 'mono', text: r.call_id }));
    return clickable(tr, r);
  }

  async function onTrace(ev) {
    ev.preventDefault();
    let q;
    try {
      q = traceQuery();
    } catch (e) {
      setStatus('#trace-status', e.message, true);
      return;
    }
    q.set('limit', String(TRACE_LIMIT));
    setStatus('#trace-status', 'searching…');
    try {
      const data = await api('records?' + q);
      const recs = (data && data.records) || [];
      renderRecords($('#trace-results tbody'), recs, traceRow);
      let msg = recs.length + (recs.length === TRACE_LIMIT ? '+ calls (narrow the search, or export)' : ' calls');
      if (recs.length) {
        const first = recs[recs.length - 1];
        msg += '; the earliest came from ' + text(first.source || '?') + (first.customer ? ' (' + first.customer + ')' : '') + ' at ' + fmtTime(first.at, true);
      }
      setStatus('#trace-status', msg);
    } catch (e) {
      setStatus('#trace-status', errText(e), true);
    }
  }

  // exportTrace downloads the export through fetch (the token is a
  // header, so a plain link cannot carry it) and hands the blob to the
  // browser as a file.
  async function exportTrace(format) {
    let q;
    try {
      q = traceQuery();
    } catch (e) {
      setStatus('#trace-status', e.message, true);
      return;
    }
    q.set('format', format);
    setStatus('#trace-status', 'exporting…');
    try {
      const resp = await api('records/export?' + q, { raw: true, accept: format === 'csv' ? 'text/csv' : 'application/x-ndjson' });
      const blob = await resp.blob();
      const url = URL.createObjectURL(blob);
      const stamp = new Date().toISOString().replace(/[-:]/g, '').slice(0, 15) + 'Z';
      const a = el('a', {});
      a.href = url;
      a.download = 'stirgate-traceback-' + stamp + '.' + (format === 'csv' ? 'csv' : 'jsonl');
      a.id = 'trace-download';
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      setStatus('#trace-status', 'exported ' + blob.size + ' bytes as ' + a.download);
    } catch (e) {
      setStatus('#trace-status', errText(e), true);
    }
  }

  onShow.trace = () => {};

  // ------------------------------------------------------------------
  // Complaints and reputation

  async function onComplaint(ev) {
    ev.preventDefault();
    const number = $('#c-number').value.trim();
    const body = { number, category: $('#c-category').value, reporter: $('#c-reporter').value.trim(), note: $('#c-note').value.trim() };
    setStatus('#c-result', 'sending…');
    try {
      const res = await api('complaints', { method: 'POST', body });
      const n = Number(res && res.complaints) || 0;
      setStatus('#c-result', 'Complaint recorded: ' + text((res && res.number) || number) + ' now has ' + n + (n === 1 ? ' complaint' : ' complaints') + ' in the reputation window.');
      $('#c-note').value = '';
    } catch (e) {
      setStatus('#c-result', errText(e), true);
    }
  }

  async function lookupNumber(number) {
    $('#n-result').replaceChildren();
    $('#n-flags').replaceChildren();
    if (!number) return;
    setStatus('#n-status', 'looking up…');
    try {
      const res = await api('numbers/' + encodeURIComponent(number));
      const flags = res.flags || {};
      const until = res.until || {};
      const flagText = (key, word) => word + (until[key] ? ' until ' + fmtTime(until[key]) : '');
      kvRows($('#n-result'), [
        ['number', 'Number', text(res.number)],
        ['complaints', 'Complaints in the window', text(res.complaints) +
          (res.complaint_window_seconds ? ' (last ' + Math.round(res.complaint_window_seconds / 3600) + ' h)' : '')],
        ['one_ring', 'One-ring flag', flags.one_ring ? flagText('one_ring', 'set') : 'not set'],
        ['protect', 'Protect mode', flags.protect ? flagText('protect', 'on') : 'off'],
        ['lists', 'On managed lists', (res.lists || []).map(text).join(', ') || 'none'],
      ]);
      for (const flag of ['one_ring', 'protect']) {
        if (!flags[flag]) continue;
        const b = el('button', { type: 'button', 'data-flag': flag, text: 'Clear ' + flag.replace('_', '-') });
        b.id = 'n-clear-' + flag;
        b.addEventListener('click', () => clearFlag(text(res.number) || number, flag));
        $('#n-flags').append(b);
      }
      setStatus('#n-status', '');
    } catch (e) {
      setStatus('#n-status', errText(e), true);
    }
  }

  async function clearFlag(number, flag) {
    try {
      await api('numbers/' + encodeURIComponent(number) + '/flags/' + flag, { method: 'DELETE' });
      await lookupNumber(number);
      setStatus('#n-status', 'Cleared ' + flag + ' of ' + number + '.');
    } catch (e) {
      setStatus('#n-status', errText(e), true);
    }
  }

  onShow.complaint = () => {};

  // ------------------------------------------------------------------
  // Managed lists

  let listEntries = [];

  async function loadLists() {
    const sel = $('#list-name');
    const keep = sel.value;
    try {
      const data = await api('lists');
      const lists = (data && data.lists) || [];
      sel.replaceChildren(...lists.map((l) => {
        const o = el('option', { text: text(l.name) + ' (' + text(l.entries) + ')' });
        o.value = text(l.name);
        return o;
      }));
      if (!lists.length) {
        setStatus('#list-status', 'No managed lists: declare one in a policy file (lists: - {name: dnc-api, managed: true}).');
        $('#list-entries tbody').replaceChildren();
        return;
      }
      if (keep && lists.some((l) => l.name === keep)) sel.value = keep;
      await loadEntries();
    } catch (e) {
      setStatus('#list-status', errText(e), true);
    }
  }

  async function loadEntries() {
    const list = $('#list-name').value;
    if (!list) return;
    try {
      const data = await api('lists/' + encodeURIComponent(list));
      listEntries = (data && data.entries) || [];
      renderEntries();
    } catch (e) {
      setStatus('#list-status', errText(e), true);
    }
  }

  function renderEntries() {
    const f = $('#list-filter').value.trim().toLowerCase();
    const shown = listEntries.filter((e) => !f || text(e.number).includes(f.replace(/\D/g, '') || f) || text(e.note).toLowerCase().includes(f));
    $('#list-entries tbody').replaceChildren(...shown.map((e) => {
      const b = el('button', { type: 'button', class: 'list-remove small', 'data-number': text(e.number), text: 'Remove' });
      b.addEventListener('click', () => removeEntry(text(e.number)));
      return el('tr', { 'data-number': text(e.number) },
        el('td', { class: 'num', text: e.number }),
        el('td', { class: 'wrap', text: e.note }),
        el('td', { text: e.added_by }),
        el('td', { class: 'nowrap', text: fmtTime(e.added) }),
        el('td', { class: 'nowrap', text: e.expires ? fmtTime(e.expires) : 'never' }),
        el('td', {}, b));
    }));
  }

  async function onListAdd(ev) {
    ev.preventDefault();
    const list = $('#list-name').value;
    const number = $('#list-number').value.trim();
    if (!list) return setStatus('#list-status', 'No managed list to add to.', true);
    const body = { note: $('#list-note').value.trim() };
    try {
      const exp = parseTime($('#list-expires').value, 'Expires');
      if (exp) body.expires = exp;
    } catch (e) {
      return setStatus('#list-status', e.message, true);
    }
    $('#list-add').disabled = true;
    try {
      const res = await api('lists/' + encodeURIComponent(list) + '/' + encodeURIComponent(number), { method: 'PUT', body });
      const n = text(res && res.entry && res.entry.number) || number;
      setStatus('#list-status', 'Added ' + n + ' to ' + list + '.');
      $('#list-number').value = '';
      $('#list-note').value = '';
      $('#list-expires').value = '';
      await loadLists();
    } catch (e) {
      setStatus('#list-status', errText(e), true);
    } finally {
      $('#list-add').disabled = false;
    }
  }

  async function onListCheck() {
    const list = $('#list-name').value;
    const number = $('#list-number').value.trim();
    if (!list || !number) return setStatus('#list-status', 'Choose a list and type a number to check.', true);
    try {
      const res = await api('lists/' + encodeURIComponent(list) + '/' + encodeURIComponent(number));
      const e = (res && res.entry) || {};
      setStatus('#list-status', text(e.number || number) + ' is on ' + list + (e.note ? ' (' + e.note + ')' : '') + '.');
    } catch (e) {
      if (e.status === 404) setStatus('#list-status', number + ' is not on ' + list + '.');
      else setStatus('#list-status', errText(e), true);
    }
  }

  async function removeEntry(number) {
    const list = $('#list-name').value;
    try {
      await api('lists/' + encodeURIComponent(list) + '/' + encodeURIComponent(number), { method: 'DELETE' });
      setStatus('#list-status', 'Removed ' + number + ' from ' + list + '.');
      await loadLists();
    } catch (e) {
      setStatus('#list-status', errText(e), true);
    }
  }

  onShow.lists = () => { loadLists(); };

  // ------------------------------------------------------------------
  // Audit trail

  let auditOldest = 0;

  function auditRow(c) {
    return el('tr', { 'data-id': text(c.id) },
      el('td', { class: 'num', text: c.id }),
      el('td', { class: 'nowrap', text: fmtTime(c.at) }),
      el('td', { text: c.actor }),
      el('td', { text: c.action }),
      el('td', { class: 'mono', text: c.target }),
      el('td', { class: 'wrap', text: c.detail }));
  }

  async function loadAudit(older) {
    const q = new URLSearchParams({ limit: '100' });
    if (older && auditOldest) q.set('before', String(auditOldest));
    try {
      const data = await api('audit?' + q);
      const changes = (data && data.changes) || [];
      const tbody = $('#audit tbody');
      if (older) tbody.append(...changes.map(auditRow));
      else tbody.replaceChildren(...changes.map(auditRow));
      if (changes.length) auditOldest = Math.min(...changes.map((c) => Number(c.id) || Infinity));
      $('#audit-more').hidden = changes.length < 100;
      setStatus('#audit-status', tbody.children.length ? '' : 'No changes yet.');
    } catch (e) {
      setStatus('#audit-status', errText(e), true);
    }
  }

  onShow.audit = () => { loadAudit(false); };

  // ------------------------------------------------------------------
  // Wiring

  function debounce(fn, ms) {
    let t = 0;
    return () => {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  function init() {
    $('#login-form').addEventListener('submit', onLogin);
    $('#logout').addEventListener('click', () => signOut());
    window.addEventListener('hashchange', () => { if (session.token) route(); });

    const refilter = debounce(pollRecords, 250);
    for (const id of ['#f-realm', '#f-decision', '#f-rule', '#f-number']) $(id).addEventListener('input', refilter);
    $('#filters').addEventListener('submit', (ev) => { ev.preventDefault(); pollRecords(); });
    $('#live').addEventListener('change', pollRecords);
    document.addEventListener('visibilitychange', () => { if (!document.hidden && current === 'decisions') pollRecords(); });

    $('#hits-refresh').addEventListener('click', loadHits);
    $('#explain-form').addEventListener('submit', onExplainSubmit);
    $('#dry-form').addEventListener('submit', onDryRun);
    $('#trace-form').addEventListener('submit', onTrace);
    $('#trace-csv').addEventListener('click', () => exportTrace('csv'));
    $('#trace-jsonl').addEventListener('click', () => exportTrace('jsonl'));
    $('#complaint-form').addEventListener('submit', onComplaint);
    $('#number-form').addEventListener('submit', (ev) => { ev.preventDefault(); lookupNumber($('#n-number').value.trim()); });
    $('#list-name').addEventListener('change', loadEntries);
    $('#list-filter').addEventListener('input', renderEntries);
    $('#list-form').addEventListener('submit', onListAdd);
    $('#list-check').addEventListener('click', onListCheck);
    $('#audit-refresh').addEventListener('click', () => loadAudit(false));
    $('#audit-more').addEventListener('click', () => loadAudit(true));

    if (session.token) showApp();
    else signOut();
  }

  init();
})();
