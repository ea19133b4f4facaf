// The ringgate web console: plain JavaScript, no build step, no libraries.
// Every name that comes from the API is put into the page as text
// (textContent / text nodes), never as HTML. The admin token lives in
// sessionStorage and travels only in the Authorization header.
'use strict';
(function () {
  const POLL_MS = 2000;
  const HISTORY_MS = 15 * 60 * 1000;
  const TOKEN_KEY = 'ringgate.token';
  const PLUGINS = {
    rate_limiter: { limits: { per_key: { limit: 100, window: '1m' } } },
    token_rate_limiter: { tokens_per_minute: 10000, per: 'key' },
    request_size_limiter: { max_bytes: 1048576 },
    cors: { allowed_origins: ['https://example.com'], allowed_methods: ['POST'] },
    ip_whitelist: { ips: ['127.0.0.1'] },
    data_masking: { entities: ['email', 'credit_card'] },
    injection_protection: { checks: ['sql', 'shell'], action: 'block' },
    budget: { daily_usd: 5, monthly_usd: 100, per: 'key' },
    cache: { ttl: '10m', max_entries: 10000, per_key: false },
  };
  const ALGORITHMS = ['round-robin', 'weighted-round-robin', 'least-connections', 'random'];
  const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'];

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let tokenNeeded = false;
  const main = document.getElementById('main');

  // ---- DOM helpers -------------------------------------------------------

  // h('tag.class', {attr: v, onclick: f}, child, ...): children are nodes or
  // strings (made text nodes); null/false children are skipped.
  function h(spec, attrs, ...kids) {
    const [tag, ...classes] = spec.split('.');
    const el = document.createElement(tag);
    if (classes.length) el.className = classes.join(' ');
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, kids);
    return el;
  }
  function append(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }
  function field(label, input, hint) {
    return h('label.field', {}, h('span', {}, label), input, hint ? h('small.muted', {}, hint) : null);
  }
  function input(name, attrs) {
    return h('input', Object.assign({ name: name, 'data-field': name, autocomplete: 'off' }, attrs || {}));
  }
  function select(name, options, value) {
    const el = h('select', { name: name, 'data-field': name });
    for (const o of options) {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      append(el, [h('option', { value: v, selected: v === value }, label)]);
    }
    return el;
  }
  function fmt(n, digits) {
    if (n === null || n === undefined || !isFinite(n)) return '—';
    return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 1 : digits });
  }
  function duration(s) {
    const d = Math.floor(s / 86400), hh = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + 'd ' : '') + (d || hh ? hh + 'h ' : '') + m + 'm ' + Math.floor(s % 60) + 's';
  }
  function flash(el, text, kind) {
    clear(el);
    el.className = 'flash ' + (kind || 'ok');
    append(el, [text]);
  }

  // ---- API ---------------------------------------------------------------

  async function api(method, path, body, quiet) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { status: 0, data: { error: 'the admin API did not answer: ' + e.message } };
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    if (res.status === 401 && path.startsWith('/api/') && !quiet) {
      tokenNeeded = true;
      if (token) { token = ''; sessionStorage.removeItem(TOKEN_KEY); }
      showLogin('The admin API needs a token' + (data && data.error ? ': ' + data.error : '') + '.');
    }
    return { status: res.status, data: data };
  }
  // Lists come as a bare array or wrapped ({gateways: [...]}, {api_keys: [...]} ...).
  function listOf(x, kind) {
    if (Array.isArray(x)) return x;
    if (!x) return [];
    for (const k of [kind, 'gateways', 'api_keys', 'keys', 'upstreams', 'services', 'rules', 'items', 'data']) {
      if (k && Array.isArray(x[k])) return x[k];
    }
    return [];
  }
  async function listAll(path, kind) {
    const out = [];
    for (let offset = 0; offset < 100000; offset += 100) {
      const r = await api('GET', path + '?offset=' + offset + '&limit=100');
      if (r.status !== 200) return { status: r.status, data: r.data, items: out };
      const page = listOf(r.data, kind);
      out.push(...page);
      if (page.length < 100) break;
    }
    return { status: 200, items: out };
  }

  // Shows an API refusal inside `form`: beside the input its `field` names
  // (the closest one when the field points inside it), else on top.
  function showError(form, r) {
    for (const old of form.querySelectorAll('.field-error, .form-error')) old.remove();
    const data = r.data || {};
    let msg = data.error || data.message || ('the admin API answered ' + r.status);
    if (r.status === 409) msg = 'Conflict: ' + msg;
    const note = h('div.field-error', { role: 'alert' }, msg);
    if (data.field) {
      let best = null;
      for (const el of form.querySelectorAll('[data-field]')) {
        const f = el.getAttribute('data-field');
        if (f === data.field || data.field.startsWith(f + '.') || data.field.startsWith(f + '[')) {
          if (!best || f.length > best.getAttribute('data-field').length) best = el;
        }
      }
      if (best) {
        note.setAttribute('data-error-for', data.field);
        best.classList.add('invalid');
        best.insertAdjacentElement('afterend', note);
        best.focus();
        return;
      }
      append(note, [' (field ', h('code', {}, data.field), ')']);
    }
    note.className = 'form-error';
    form.insertBefore(note, form.firstChild);
  }
  function clearErrors(form) {
    for (const old of form.querySelectorAll('.field-error, .form-error')) old.remove();
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  }
  // A form whose submit calls `send(form)`; a 2xx answer calls `done`.
  function form(cls, kids, send, done) {
    const f = h('form.' + cls, { novalidate: true }, kids);
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(f);
      const button = f.querySelector('button[type=submit]');
      if (button) button.disabled = true;
      try {
        const r = await send(f);
        if (r.status >= 200 && r.status < 300) await done(r, f);
        else showError(f, r);
      } catch (e) {
        showError(f, { status: 0, data: { error: e.message } });
      } finally {
        if (button) button.disabled = false;
      }
    });
    return f;
  }
  function value(f, name) {
    const el = f.querySelector('[name="' + name + '"]');
    return el ? el.value.trim() : '';
  }
  function csv(s) {
    return s.split(',').map((x) => x.trim()).filter(Boolean);
  }
  // A button that asks for a second click before it acts (no modal dialogs).
  function confirmButton(label, act) {
    const b = h('button.danger', { type: 'button' }, label);
    let armed = null;
    b.addEventListener('click', async () => {
      if (!armed) {
        b.textContent = 'Click again to ' + label.toLowerCase();
        armed = setTimeout(() => { armed = null; b.textContent = label; }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      b.disabled = true;
      await act(b);
      b.disabled = false;
      b.textContent = label;
    });
    return b;
  }

  // ---- metrics -----------------------------------------------------------

  // Prometheus text → [{name, labels, value}].
  function parseMetrics(text) {
    const out = [];
    const line = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    for (const l of text.split('\n')) {
      if (!l || l[0] === '#') continue;
      const m = line.exec(l);
      if (!m) continue;
      const labels = {};
      let lm;
      label.lastIndex = 0;
      while ((lm = label.exec(m[2] || '')) !== null) {
        labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
      }
      out.push({ name: m[1], labels: labels, value: Number(m[3]) });
    }
    return out;
  }
  // One scrape reduced to what the console shows.
  function reduce(samples) {
    const s = { t: Date.now(), gw: {}, targets: {}, uptime: 0, version: '' };
    const gw = (name) => s.gw[name] || (s.gw[name] = { req: 0, err: 0, tokens: 0, buckets: {} });
    for (const m of samples) {
      const g = m.labels.gateway;
      switch (m.name) {
        case 'ringgate_requests_total':
          gw(g).req += m.value;
          if (Number(m.labels.status) >= 500) gw(g).err += m.value;
          break;
        case 'ringgate_request_duration_seconds_bucket': {
          const b = gw(g).buckets;
          b[m.labels.le] = (b[m.labels.le] || 0) + m.value;
          break;
        }
        case 'ringgate_prompt_tokens_total':
        case 'ringgate_completion_tokens_total':
          gw(g).tokens += m.value;
          break;
        case 'ringgate_target_up':
        case 'ringgate_target_ejected_shards': {
          const key = [g, m.labels.upstream, m.labels.target].join('\u0000');
          const t = s.targets[key] || (s.targets[key] = { up: 1, passive: 0, circuit_breaker: 0 });
          if (m.name === 'ringgate_target_up') t.up = m.value;
          else t[m.labels.reason] = m.value;
          break;
        }
        case 'ringgate_uptime_seconds':
          s.uptime = m.value;
          break;
        case 'ringgate_build_info':
          s.version = m.labels.version || '';
          break;
      }
    }
    return s;
  }
  const history = [];
  let latest = null;
  let pollError = '';
  const listeners = new Set();
  async function poll() {
    try {
      const res = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' });
      if (!res.ok) throw new Error('/metrics answered ' + res.status);
      latest = reduce(parseMetrics(await res.text()));
      history.push(latest);
      while (history.length && history[0].t < latest.t - HISTORY_MS) history.shift();
      pollError = '';
    } catch (e) {
      pollError = e.message;
    }
    for (const f of listeners) f();
  }
  // Before the first chart: the server's samples of the last 15 minutes
  // (GET /api/v1/stats, cumulative like /metrics), older than what this
  // page has polled itself.
  let seeded = false;
  async function seed() {
    if (seeded) return;
    const r = await api('GET', '/api/v1/stats');
    if (r.status !== 200 || !r.data || !Array.isArray(r.data.samples)) return;
    seeded = true;
    const les = r.data.latency_buckets || [];
    const now = Date.now();
    const older = r.data.samples.map((x) => {
      const out = { t: now - x.age_ms, gw: {}, targets: {}, uptime: 0, version: '' };
      for (const [name, g] of Object.entries(x.gateways || {})) {
        const buckets = {};
        let sum = 0;
        (g.latency || []).forEach((n, i) => { sum += n; buckets[les[i]] = sum; });
        out.gw[name] = { req: g.requests, err: g.errors_5xx, tokens: g.tokens, buckets: buckets };
      }
      return out;
    }).filter((x) => !history.length || x.t < history[0].t - 500);
    history.unshift(...older);
  }
  function quantile(buckets, q) {
    const les = Object.keys(buckets).filter((k) => k !== '+Inf').map(Number).sort((a, b) => a - b);
    const total = buckets['+Inf'] || 0;
    if (total <= 0) return null;
    const want = total * q;
    let prevLe = 0, prevCount = 0;
    for (const le of les) {
      const c = buckets[String(le)] !== undefined ? buckets[String(le)] : buckets[le.toString()];
      if (c >= want) return prevLe + (le - prevLe) * ((want - prevCount) / Math.max(c - prevCount, 1e-9));
      prevLe = le;
      prevCount = c;
    }
    return prevLe;
  }
  // Rates between two scrapes for gateway `g` (all gateways when null).
  function rates(a, b, g) {
    const names = g === null ? Object.keys(b.gw) : [g];
    const secs = Math.max((b.t - a.t) / 1000, 0.001);
    let req = 0, err = 0, tok = 0;
    const buckets = {};
    for (const n of names) {
      const x = b.gw[n], y = a.gw[n] || { req: 0, err: 0, tokens: 0, buckets: {} };
      if (!x) continue;
      req += Math.max(x.req - y.req, 0);
      err += Math.max(x.err - y.err, 0);
      tok += Math.max(x.tokens - y.tokens, 0);
      for (const [le, c] of Object.entries(x.buckets)) {
        buckets[le] = (buckets[le] || 0) + Math.max(c - (y.buckets[le] || 0), 0);
      }
    }
    return {
      rps: req / secs,
      errRate: req ? (100 * err) / req : 0,
      p50: quantile(buckets, 0.5),
      p99: quantile(buckets, 0.99),
      tpm: (tok * 60) / secs,
    };
  }
  // Rates over the last `ms` of history (the newest scrape against the
  // oldest one inside the span).
  function recent(g, ms) {
    if (history.length < 2) return null;
    const b = history[history.length - 1];
    let a = history[history.length - 2];
    for (let i = history.length - 2; i >= 0 && history[i].t >= b.t - ms; i--) a = history[i];
    return rates(a, b, g);
  }
  function series(key, scale) {
    const pts = [];
    for (let i = 1; i < history.length; i++) {
      const v = rates(history[i - 1], history[i], null)[key];
      pts.push([history[i].t, v === null ? null : v * scale]);
    }
    return pts;
  }
  // A small line chart as inline SVG (attributes only, no inline style).
  function chart(title, key, unit, scale) {
    const W = 300, H = 80;
    const pts = series(key, scale || 1).filter((p) => p[1] !== null);
    const svgNS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(svgNS, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    svg.setAttribute('class', 'chart');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', title);
    svg.setAttribute('data-chart', key);
    svg.setAttribute('data-points', pts.length);
    const now = Date.now();
    // The span shown: what this page has seen, at least a minute, at most 15.
    const span = Math.min(HISTORY_MS, Math.max(60000, history.length ? now - history[0].t : 0));
    const max = Math.max(...pts.map((p) => p[1]), 1e-9);
    const line = document.createElementNS(svgNS, 'polyline');
    line.setAttribute('points', pts.map((p) => {
      const x = W - ((now - p[0]) / span) * W;
      const y = H - 4 - (p[1] / max) * (H - 8);
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', 'currentColor');
    line.setAttribute('stroke-width', '1.5');
    svg.appendChild(line);
    const last = pts.length ? pts[pts.length - 1][1] : null;
    return h('figure.card', {}, h('figcaption', {}, title, h('b', {}, ' ' + fmt(last, 2) + ' ' + unit),
      h('small.muted', {}, ' max ' + fmt(pts.length ? max : null, 2) + ' · last ' + Math.round(span / 60000) + ' min')), svg);
  }

  // ---- access ------------------------------------------------------------

  function showAccess() {
    const el = document.getElementById('access');
    const out = document.getElementById('logout');
    clear(el);
    el.className = 'access';
    if (token) {
      append(el, ['signed in with the admin token']);
      out.hidden = false;
    } else if (!tokenNeeded) {
      el.className = 'access open';
      append(el, ['admin API open (no --admin-token) on ' + location.host]);
      out.hidden = true;
    } else {
      out.hidden = true;
    }
  }
  function showLogin(reason) {
    stopView();
    showAccess();
    const f = form('login', [
      h('h1', {}, 'Sign in'),
      h('p.muted', {}, reason || 'This gateway was started with --admin-token.'),
      field('Admin token', input('token', { type: 'password', autocomplete: 'current-password', autofocus: true })),
      h('button', { type: 'submit' }, 'Sign in'),
    ], async (f) => {
      token = value(f, 'token');
      const r = await api('GET', '/api/v1/status', undefined, true);
      if (r.status !== 200 && r.status !== 401) return r;
      if (r.status === 401) {
        token = '';
        return { status: 401, data: { error: 'that token was refused', field: 'token' } };
      }
      return r;
    }, async () => {
      sessionStorage.setItem(TOKEN_KEY, token);
      if (location.hash === '#/login') location.hash = '#/';
      route();
    });
    clear(main).appendChild(f);
  }
  document.getElementById('logout').addEventListener('click', () => {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('Signed out.');
  });

  // ---- views -------------------------------------------------------------

  let viewCleanup = null;
  function stopView() {
    if (viewCleanup) viewCleanup();
    viewCleanup = null;
  }
  function onPoll(f) {
    listeners.add(f);
    const prev = viewCleanup;
    viewCleanup = () => { listeners.delete(f); if (prev) prev(); };
  }

  async function overview() {
    const r = await api('GET', '/api/v1/status');
    if (r.status === 401) return;
    await seed();
    const st = r.status === 200 ? r.data : null;
    const head = h('section.cards');
    const charts = h('section.charts');
    const table = h('div.scroll');
    const note = h('p.muted');
    clear(main);
    append(main, [h('h1', {}, 'Overview'), head, charts, h('h2', {}, 'Gateways'), table, note]);
    const render = () => {
      clear(head);
      const total = latest ? Object.values(latest.gw).reduce((a, g) => a + g.req, 0) : null;
      const now = recent(null, 10000);
      append(head, [
        card('Version', st ? st.version : latest ? latest.version : '—'),
        card('Uptime', latest ? duration(latest.uptime) : '—'),
        card('Requests', fmt(total, 0), 'requests-total'),
        card('Requests/s', now ? fmt(now.rps, 1) : '—'),
        card('5xx rate', now ? fmt(now.errRate, 1) + ' %' : '—'),
        card('p50 / p99', now && now.p50 !== null ? fmt(now.p50 * 1000, 2) + ' / ' + fmt(now.p99 * 1000, 2) + ' ms' : '—'),
        card('Tokens/min', now ? fmt(now.tpm, 0) : '—'),
      ]);
      if (st) {
        append(head, [h('div.card.wide', {}, h('span.muted', {}, 'Shards'), h('ul.shards', {},
          st.shards.map((s) => h('li', {}, 'shard ' + s.shard + ' (cpu ' + s.cpu + '): generation ' +
            s.config_generation + ', ' + s.open_connections + ' open connections'))))]);
      }
      clear(charts);
      append(charts, [
        chart('Requests/s', 'rps', ''),
        chart('5xx rate', 'errRate', '%'),
        chart('p99 latency', 'p99', 'ms', 1000),
        chart('Tokens/min', 'tpm', ''),
      ]);
      clear(table);
      const rows = latest ? Object.keys(latest.gw).sort() : [];
      append(table, [h('table', {}, h('thead', {}, h('tr', {}, ['Gateway', 'Requests', 'Req/s', '5xx %', 'p50', 'p99',
        'Tokens/min'].map((t) => h('th', {}, t)))), h('tbody', {}, rows.map((g) => {
        const x = recent(g, 10000);
        return h('tr', { 'data-gateway': g }, h('td', {}, g === '' ? '(no gateway)' : g),
          h('td.num', { 'data-test': 'requests' }, fmt(latest.gw[g].req, 0)),
          h('td.num', {}, x ? fmt(x.rps, 1) : '—'), h('td.num', {}, x ? fmt(x.errRate, 1) : '—'),
          h('td.num', {}, x ? ms(x.p50) : '—'), h('td.num', {}, x ? ms(x.p99) : '—'),
          h('td.num', {}, x ? fmt(x.tpm, 0) : '—'));
      })))]);
      clear(note);
      append(note, [pollError ? 'metrics: ' + pollError : 'Live from /metrics every ' + POLL_MS / 1000 +
        ' s, rates over the last 10 s. Charts: the last 15 minutes (the server keeps a sample every 10 s).']);
    };
    render();
    onPoll(render);
  }
  function card(label, v, test) {
    return h('div.card', {}, h('span.muted', {}, label), h('b', { 'data-test': test }, v));
  }
  function ms(s) {
    return s === null || s === undefined ? '—' : fmt(s * 1000, 2) + ' ms';
  }

  async function gateways() {
    const r = await listAll('/api/v1/gateways', 'gateways');
    if (r.status === 401) return;
    const list = h('div.scroll');
    if (r.status !== 200) append(list, [h('p.form-error', {}, (r.data && r.data.error) || 'cannot list gateways')]);
    else if (!r.items.length) append(list, [h('p.muted', {}, 'No gateways yet.')]);
    else {
      append(list, [h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Subdomain', 'Status', 'Id'].map((t) => h('th', {}, t)))),
        h('tbody', {}, r.items.map((g) => h('tr', {},
          h('td', {}, h('a.gw-link', { href: '#/gateways/' + encodeURIComponent(g.id) }, g.name)),
          h('td', {}, g.subdomain || ''), h('td', {}, g.status || 'active'), h('td', {}, h('code', {}, g.id))))))]);
    }
    const create = form('create-gateway', [
      h('h2', {}, 'New gateway'),
      h('div.row', {}, field('Name', input('name', { required: true })), field('Subdomain', input('subdomain'), 'optional')),
      h('button', { type: 'submit' }, 'Create gateway'),
    ], (f) => {
      const body = { name: value(f, 'name') };
      if (value(f, 'subdomain')) body.subdomain = value(f, 'subdomain');
      return api('POST', '/api/v1/gateways', body);
    }, (res) => { location.hash = '#/gateways/' + encodeURIComponent(res.data.id); });
    clear(main);
    append(main, [h('h1', {}, 'Gateways'), list, create]);
  }

  async function gateway(id) {
    stopView();
    const base = '/api/v1/gateways/' + encodeURIComponent(id);
    const [g, ups, svcs, rules, keys] = await Promise.all([
      api('GET', base), listAll(base + '/upstreams', 'upstreams'), listAll(base + '/services', 'services'),
      listAll(base + '/rules', 'rules'), listAll(base + '/keys', 'api_keys'),
    ]);
    if (g.status === 401) return;
    clear(main);
    if (g.status !== 200) {
      append(main, [h('h1', {}, 'Gateway'), h('p.form-error', {}, (g.data && g.data.error) || 'not found'),
        h('a', { href: '#/gateways' }, 'All gateways')]);
      return;
    }
    const gw = g.data;
    const reload = () => gateway(id);
    const health = [];
    append(main, [
      h('p.crumbs', {}, h('a', { href: '#/gateways' }, 'Gateways'), ' / '),
      h('h1.gw-name', {}, gw.name),
      h('p.muted', {}, 'id ', h('code', {}, gw.id), gw.subdomain ? ' · subdomain ' : '', gw.subdomain ? h('code', {}, gw.subdomain) : '',
        ' · ' + (gw.status || 'active')),
      section('Upstreams', upstreamTable(ups.items, gw, health, base, reload), upstreamForm(base, reload)),
      section('Services', serviceTable(svcs.items, ups.items, base, reload), serviceForm(base, ups.items, reload)),
      section('Rules', ruleTable(rules.items, svcs.items, base, reload), ruleForm(base, svcs.items, reload)),
      section('API keys', keyTable(keys.items, base, reload), keyForm(base, reload)),
      section('Gateway', gatewayForm(base, gw, reload),
        pluginEditor('Required plugins (every rule)', 'required_plugins', gw, base, reload),
        h('div.danger-zone', {}, confirmButton('Delete gateway', async () => {
          const r = await api('DELETE', base);
          if (r.status === 204) location.hash = '#/gateways';
        }), h('small.muted', {}, ' deletes its upstreams, services, rules and keys too'))),
    ]);
    const paint = () => {
      for (const [el, key] of health) {
        const t = latest && latest.targets[key];
        clear(el);
        if (!t) { el.className = 'badge unknown'; append(el, ['unknown']); continue; }
        if (!t.up) { el.className = 'badge down'; append(el, ['down (health check)']); continue; }
        if (t.circuit_breaker) { el.className = 'badge warn'; append(el, ['ejected: breaker on ' + t.circuit_breaker + ' shard(s)']); continue; }
        if (t.passive) { el.className = 'badge warn'; append(el, ['ejected: passive on ' + t.passive + ' shard(s)']); continue; }
        el.className = 'badge up';
        append(el, ['up']);
      }
    };
    paint();
    onPoll(paint);
  }
  function section(title, ...kids) {
    return h('section.block', { 'data-section': title.toLowerCase() }, h('h2', {}, title), kids);
  }
  function table(headers, rows) {
    return h('div.scroll', {}, h('table', {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
  }
  function actions(base, kind, item, reload, canEdit) {
    const path = base + '/' + kind + '/' + encodeURIComponent(item.id);
    return h('td.actions', {}, canEdit ? jsonEditorButton(path, item, reload) : null,
      confirmButton(kind === 'keys' ? 'Revoke' : 'Delete', async (b) => {
        const r = await api('DELETE', path);
        if (r.status === 204) reload();
        else showError(b.closest('section'), r);
      }));
  }
  // Edit an entity as JSON (PUT), with the server's refusal shown under it.
  function jsonEditorButton(path, item, reload) {
    return h('button', { type: 'button', onclick: (ev) => {
      const row = ev.target.closest('tr');
      if (row.nextSibling && row.nextSibling.classList.contains('editor')) { row.nextSibling.remove(); return; }
      const text = h('textarea', { rows: 12, 'data-field': '', spellcheck: 'false' });
      text.value = JSON.stringify(item, null, 2);
      const f = form('json-edit', [text, h('button', { type: 'submit' }, 'Save')], (f) => {
        let body;
        try { body = JSON.parse(text.value); } catch (e) {
          return { status: 400, data: { error: 'not JSON: ' + e.message } };
        }
        return api('PUT', path, body);
      }, reload);
      row.insertAdjacentElement('afterend', h('tr.editor', {}, h('td', { colspan: 9 }, f)));
    }, 'data-action': 'edit' }, 'Edit');
  }

  function upstreamTable(items, gw, health, base, reload) {
    return table(['Name', 'Algorithm', 'Targets', ''], items.map((u) => h('tr', { 'data-upstream': u.name },
      h('td', {}, u.name), h('td', {}, u.algorithm || 'round-robin'),
      h('td', {}, h('ul.targets', {}, (u.targets || []).map((t) => {
        const badge = h('span.badge.unknown', { 'data-target': t.host + ':' + t.port }, 'unknown');
        health.push([badge, [gw.name, u.name, t.host + ':' + t.port].join('\u0000')]);
        return h('li', {}, h('code', {}, (t.protocol || 'http') + '://' + t.host + ':' + t.port + (t.path || '')), ' ', badge,
          h('small.muted', {}, ' weight ' + (t.weight === undefined ? 1 : t.weight) + (t.provider ? ' · ' + t.provider : '') +
            (t.models && t.models.length ? ' · ' + t.models.join(', ') : '')));
      }))),
      actions(base, 'upstreams', u, reload, true),
    )));
  }
  function upstreamForm(base, reload) {
    const targets = h('div.targets-edit');
    const addTarget = () => {
      const i = targets.children.length;
      const p = 'targets[' + i + '].';
      append(targets, [h('div.row', {}, field('Host', input(p + 'host', { value: '127.0.0.1' })),
        field('Port', input(p + 'port', { inputmode: 'numeric' })),
        field('Weight', input(p + 'weight', { value: '1', inputmode: 'numeric' })),
        field('Provider', input(p + 'provider'), 'openai, anthropic …'),
        field('Models', input(p + 'models'), 'comma-separated'))]);
    };
    addTarget();
    return form('create-upstream', [
      h('h3', {}, 'New upstream'),
      h('div.row', {}, field('Name', input('name')), field('Algorithm', select('algorithm', ALGORITHMS, 'round-robin'))),
      targets,
      h('button.link', { type: 'button', onclick: addTarget }, '+ another target'),
      h('div.row', {}, field('Health check path', input('health_checks.path'), 'optional, e.g. /health'),
        field('Interval (s)', input('health_checks.interval', { value: '5', inputmode: 'numeric' }))),
      h('button', { type: 'submit' }, 'Create upstream'),
    ], (f) => {
      const body = { name: value(f, 'name'), algorithm: value(f, 'algorithm'), targets: [] };
      for (let i = 0; i < targets.children.length; i++) {
        const p = 'targets[' + i + '].';
        const t = { host: value(f, p + 'host'), port: num(value(f, p + 'port')), weight: num(value(f, p + 'weight')) };
        if (value(f, p + 'provider')) t.provider = value(f, p + 'provider');
        if (value(f, p + 'models')) t.models = csv(value(f, p + 'models'));
        body.targets.push(t);
      }
      if (value(f, 'health_checks.path')) {
        body.health_checks = { path: value(f, 'health_checks.path'), interval: num(value(f, 'health_checks.interval')), threshold: 1 };
      }
      return api('POST', base + '/upstreams', body);
    }, reload);
  }
  // Numbers as typed: a number when it reads as one, else the text, so the
  // server names the field that is wrong.
  function num(s) {
    return s !== '' && isFinite(Number(s)) ? Number(s) : s;
  }

  function serviceTable(items, ups, base, reload) {
    const upName = (id) => (ups.find((u) => u.id === id) || {}).name || id || '';
    return table(['Name', 'Type', 'Upstream', ''], items.map((s) => h('tr', {},
      h('td', {}, s.name), h('td', {}, s.type || 'upstream'), h('td', {}, upName(s.upstream_id) || s.upstream || ''),
      actions(base, 'services', s, reload, true))));
  }
  function serviceForm(base, ups, reload) {
    return form('create-service', [
      h('h3', {}, 'New service'),
      h('div.row', {}, field('Name', input('name')),
        field('Upstream', select('upstream_id', [['', '—']].concat(ups.map((u) => [u.id, u.name])), ups.length ? ups[0].id : ''))),
      h('button', { type: 'submit' }, 'Create service'),
    ], (f) => api('POST', base + '/services', { name: value(f, 'name'), type: 'upstream', upstream_id: value(f, 'upstream_id') }), reload);
  }

  function ruleTable(items, svcs, base, reload) {
    const svcName = (id) => (svcs.find((s) => s.id === id) || {}).name || id || '';
    return table(['Name', 'Methods', 'Path', 'Service', 'Plugins', ''], items.map((r) => {
      const row = h('tr', {}, h('td', {}, r.name), h('td', {}, (r.methods || []).join(' ')), h('td', {}, h('code', {}, r.path)),
        h('td', {}, svcName(r.service_id) || r.service || ''),
        h('td', {}, (r.plugin_chain || []).map((p) => p.name + (p.enabled === false ? ' (off)' : '')).join(', ') || '—'),
        h('td.actions', {}, h('button', { type: 'button', onclick: (ev) => {
          const tr = ev.target.closest('tr');
          if (tr.nextSibling && tr.nextSibling.classList.contains('editor')) { tr.nextSibling.remove(); return; }
          tr.insertAdjacentElement('afterend', h('tr.editor', {}, h('td', { colspan: 9 },
            pluginEditor('Plugins of rule ' + r.name, 'plugin_chain', r, base + '/rules/' + encodeURIComponent(r.id), reload))));
        }, 'data-action': 'plugins' }, 'Plugins'), jsonEditorButton(base + '/rules/' + encodeURIComponent(r.id), r, reload),
        confirmButton('Delete', async (b) => {
          const res = await api('DELETE', base + '/rules/' + encodeURIComponent(r.id));
          if (res.status === 204) reload(); else showError(b.closest('section'), res);
        })));
      return row;
    }));
  }
  function ruleForm(base, svcs, reload) {
    return form('create-rule', [
      h('h3', {}, 'New rule'),
      h('div.row', {}, field('Name', input('name')), field('Path', input('path', { value: '/v1' })),
        field('Service', select('service_id', [['', '—']].concat(svcs.map((s) => [s.id, s.name])), svcs.length ? svcs[0].id : ''))),
      h('fieldset.methods', { 'data-field': 'methods' }, h('legend', {}, 'Methods'),
        METHODS.map((m) => h('label.check', {}, h('input', { type: 'checkbox', name: 'method', value: m, checked: m === 'GET' || m === 'POST' }), m))),
      h('label.check', {}, h('input', { type: 'checkbox', name: 'strip_path' }), 'strip the rule path before forwarding'),
      h('button', { type: 'submit' }, 'Create rule'),
    ], (f) => api('POST', base + '/rules', {
      name: value(f, 'name'), path: value(f, 'path'), service_id: value(f, 'service_id'),
      methods: [...f.querySelectorAll('input[name=method]:checked')].map((x) => x.value),
      strip_path: f.querySelector('input[name=strip_path]').checked,
    }), reload);
  }

  function keyTable(items, base, reload) {
    return table(['Name', 'Prefix', 'Active', 'Expires', 'Created', ''], items.map((k) => h('tr', {},
      h('td', {}, k.name), h('td', {}, h('code', {}, (k.prefix || '') + '…')), h('td', {}, k.active === false ? 'no' : 'yes'),
      h('td', {}, k.expires_at || '—'), h('td', {}, k.created_at || ''), actions(base, 'keys', k, reload, false))));
  }
  function keyForm(base, reload) {
    const shown = h('div.key-once');
    const f = form('create-key', [
      h('h3', {}, 'New API key'),
      h('div.row', {}, field('Name', input('name')), field('Expires at', input('expires_at'), 'optional, RFC 3339')),
      h('button', { type: 'submit' }, 'Create key'),
    ], (f) => {
      const body = { name: value(f, 'name') };
      if (value(f, 'expires_at')) body.expires_at = value(f, 'expires_at');
      return api('POST', base + '/keys', body);
    }, async (r) => {
      await reload();
      // The page was rebuilt: show the key in the new form's place, once.
      const slot = main.querySelector('.key-once');
      const key = h('input.key', { readonly: true, value: r.data.key, 'data-test': 'new-key' });
      const copy = h('button', { type: 'button', onclick: async () => {
        key.select();
        try { await navigator.clipboard.writeText(r.data.key); } catch (e) { document.execCommand('copy'); }
        copy.textContent = 'Copied';
      } }, 'Copy');
      append(clear(slot), [h('p', {}, 'The key ', h('b', {}, r.data.name), ' (shown once; only its prefix is kept):'), h('div.row', {}, key, copy)]);
    });
    return h('div', {}, shown, f);
  }

  function gatewayForm(base, gw, reload) {
    return form('edit-gateway', [
      h('div.row', {}, field('Name', input('name', { value: gw.name })), field('Subdomain', input('subdomain', { value: gw.subdomain || '' })),
        field('Status', select('status', ['active', 'inactive'], gw.status || 'active'))),
      h('button', { type: 'submit' }, 'Save gateway'),
    ], (f) => {
      const body = Object.assign({}, gw, { name: value(f, 'name'), status: value(f, 'status') });
      if (value(f, 'subdomain')) body.subdomain = value(f, 'subdomain'); else delete body.subdomain;
      return api('PUT', base, body);
    }, reload);
  }

  // A plugin list (`prop` of `entity`): order, enable, edit settings as JSON,
  // add, remove; saved by PUT of the whole entity to `path`.
  function pluginEditor(title, prop, entity, path, reload) {
    const plugins = JSON.parse(JSON.stringify(entity[prop] || []));
    const list = h('ol.plugins');
    const draw = () => {
      clear(list);
      plugins.forEach((p, i) => {
        const text = h('textarea', { rows: 4, spellcheck: 'false', 'data-field': prop + '[' + i + ']' });
        text.value = JSON.stringify(p.settings || {}, null, 2);
        text.addEventListener('change', () => { p.__text = text.value; });
        append(list, [h('li', {}, h('div.row', {}, h('b', {}, p.name),
          h('label.check', {}, h('input', { type: 'checkbox', checked: p.enabled !== false, onchange: (ev) => { p.enabled = ev.target.checked; } }), 'enabled'),
          select('stage', ['pre_request', 'post_response'], p.stage || 'pre_request'),
          h('button', { type: 'button', disabled: i === 0, onclick: () => { sync(); plugins.splice(i - 1, 0, plugins.splice(i, 1)[0]); draw(); } }, '↑'),
          h('button', { type: 'button', disabled: i === plugins.length - 1, onclick: () => { sync(); plugins.splice(i + 1, 0, plugins.splice(i, 1)[0]); draw(); } }, '↓'),
          h('button.danger', { type: 'button', onclick: () => { sync(); plugins.splice(i, 1); draw(); } }, 'Remove')), text)]);
        list.lastChild.querySelector('select').addEventListener('change', (ev) => { p.stage = ev.target.value; });
      });
    };
    const sync = () => {
      list.querySelectorAll('textarea').forEach((t, i) => { plugins[i].__text = t.value; });
    };
    draw();
    const adder = select('new_plugin', Object.keys(PLUGINS), 'rate_limiter');
    return form('plugins', [h('h3', {}, title), list,
      h('div.row', {}, adder, h('button', { type: 'button', onclick: () => {
        sync();
        plugins.push({ name: adder.value, enabled: true, stage: 'pre_request', priority: 0, settings: PLUGINS[adder.value] });
        draw();
      }, 'data-action': 'add-plugin' }, 'Add plugin')),
      h('button', { type: 'submit' }, 'Save plugins')], (f) => {
      sync();
      const out = [];
      for (let i = 0; i < plugins.length; i++) {
        const p = Object.assign({}, plugins[i]);
        try { p.settings = JSON.parse(p.__text === undefined ? JSON.stringify(p.settings || {}) : p.__text); } catch (e) {
          return { status: 400, data: { error: 'settings are not JSON: ' + e.message, field: prop + '[' + i + ']' } };
        }
        delete p.__text;
        out.push(p);
      }
      const body = Object.assign({}, entity);
      body[prop] = out;
      return api('PUT', path, body);
    }, reload);
  }

  // ---- configuration -----------------------------------------------------

  async function config() {
    const cur = await api('GET', '/api/v1/config');
    if (cur.status === 401) return;
    const preview = h('div.preview');
    const result = h('div');
    const text = h('textarea', { rows: 10, spellcheck: 'false', 'data-field': '', placeholder: 'paste a configuration, or choose a file' });
    const file = h('input', { type: 'file', accept: 'application/json,.json' });
    file.addEventListener('change', async () => { if (file.files[0]) { text.value = await file.files[0].text(); showPreview(); } });
    let parsed = null;
    const showPreview = () => {
      clear(preview);
      parsed = null;
      try { parsed = JSON.parse(text.value); } catch (e) {
        append(preview, [h('p.form-error', {}, 'not JSON: ' + e.message)]);
        return;
      }
      const changes = diff(cur.data || { gateways: [] }, parsed);
      append(preview, [h('h3', {}, 'What changes'), changes.length ? h('ul.changes', {}, changes.map(([kind, what]) =>
        h('li.' + kind, {}, h('b', {}, kind + ' '), what))) : h('p.muted', {}, 'Nothing changes.')]);
    };
    text.addEventListener('input', () => { parsed = null; clear(preview); });
    const upload = form('upload-config', [
      h('h2', {}, 'Upload'), h('div.row', {}, file), text,
      h('div.row', {}, h('button', { type: 'button', onclick: showPreview, 'data-action': 'preview' }, 'Preview changes'),
        h('button', { type: 'submit' }, 'Replace the configuration')), preview,
    ], async () => {
      if (!parsed) showPreview();
      if (!parsed) return { status: 400, data: { error: 'nothing to upload: the text is not JSON' } };
      return api('PUT', '/api/v1/config', parsed);
    }, async () => { flash(result, 'The configuration was replaced and every shard serves it.'); });
    const download = h('button', { type: 'button', onclick: async () => {
      const r = await api('GET', '/api/v1/config');
      if (r.status !== 200) return;
      const a = h('a', { href: URL.createObjectURL(new Blob([JSON.stringify(r.data, null, 2)], { type: 'application/json' })),
        download: 'ringgate-config.json' });
      document.body.appendChild(a);
      a.click();
      a.remove();
    }, 'data-action': 'download' }, 'Download configuration');
    clear(main);
    append(main, [h('h1', {}, 'Configuration'), h('p.muted', {}, 'The whole configuration as GET /api/v1/config gives it (keys as hashes). ' +
      'A replacement is applied atomically: all of it or, on a 400, nothing.'), download, result, upload]);
  }
  // Changes between two configurations, by gateway and entity name.
  function diff(a, b) {
    const out = [];
    const byName = (xs) => new Map((xs || []).map((x) => [x.name, x]));
    const strip = (x) => JSON.stringify(x, (k, v) => (['id', 'gateway_id', 'created_at', 'updated_at', 'upstream_id', 'service_id'].includes(k) ? undefined : v));
    const ga = byName(a.gateways), gb = byName(b.gateways);
    for (const [name, g] of gb) {
      const old = ga.get(name);
      if (!old) { out.push(['added', 'gateway ' + name]); continue; }
      for (const kind of ['upstreams', 'services', 'rules', 'keys']) {
        const ea = byName(old[kind]), eb = byName(g[kind]);
        for (const [n, e] of eb) {
          if (!ea.has(n)) out.push(['added', kind.replace(/s$/, '') + ' ' + name + '/' + n]);
          else if (strip(ea.get(n)) !== strip(e)) out.push(['changed', kind.replace(/s$/, '') + ' ' + name + '/' + n]);
        }
        for (const n of ea.keys()) if (!eb.has(n)) out.push(['removed', kind.replace(/s$/, '') + ' ' + name + '/' + n]);
      }
      const own = (x) => strip(Object.assign({}, x, { upstreams: 0, services: 0, rules: 0, keys: 0 }));
      if (own(old) !== own(g)) out.push(['changed', 'gateway ' + name + ' (its own settings)']);
    }
    for (const name of ga.keys()) if (!gb.has(name)) out.push(['removed', 'gateway ' + name + ' and everything in it']);
    return out;
  }

  // ---- router ------------------------------------------------------------

  async function route() {
    stopView();
    const hash = location.hash.replace(/^#/, '') || '/';
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('current', hash === '/' ? a.dataset.nav === 'overview' : hash.startsWith('/' + a.dataset.nav));
    }
    if (hash === '/login') { showLogin(); return; }
    showAccess();
    const m = hash.match(/^\/gateways\/([^/]+)$/);
    if (m) await gateway(decodeURIComponent(m[1]));
    else if (hash === '/gateways') await gateways();
    else if (hash === '/config') await config();
    else await overview();
    showAccess();
  }
  window.addEventListener('hashchange', route);
  route();
  poll();
  setInterval(() => { if (!document.hidden) poll(); }, POLL_MS);
})();
