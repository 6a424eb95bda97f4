// Pregonero dashboard: sign-in (Keycloak or local), API keys, audit log.
// Plain ES module served by the server itself; every change sends the session's CSRF token.
const main = document.getElementById('main');
let me = null;

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return node;
};

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && me?.csrf_token) headers['X-CSRF-Token'] = me.csrf_token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw Object.assign(new Error(data?.message || res.statusText), { status: res.status, code: data?.error, data });
  return data;
}

const when = (t) => (t ? new Date(t).toLocaleString() : '—');
const errorBox = (e) => el('p', { class: 'error', role: 'alert' }, e.message);

async function showLogin() {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const config = await api('GET', '/auth/config');
  if (config.mode === 'oidc') {
    const back = encodeURIComponent(location.pathname + location.hash);
    main.replaceChildren(el('h1', {}, 'Sign in'), el('a', { href: `/auth/login?return_to=${back}`, id: 'sso' }, el('button', {}, 'Sign in with Keycloak')));
    return;
  }
  const message = el('div');
  const form = el('form', { id: 'login' },
    el('label', {}, 'User', el('input', { type: 'text', name: 'username', value: 'admin', autocomplete: 'username', required: true })),
    el('label', {}, 'Password', el('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true })),
    el('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    try {
      await api('POST', '/auth/login', { username: f.get('username'), password: f.get('password') });
      await start();
    } catch (e) { message.replaceChildren(errorBox(e)); }
  });
  main.replaceChildren(el('h1', {}, 'Sign in'), form, message);
}

async function showKeys() {
  const created = el('div');
  const message = el('div');
  const list = el('tbody');
  const form = el('form', { id: 'new-key' },
    el('label', {}, 'Name', el('input', { type: 'text', name: 'name', required: true, maxlength: 100 })),
    el('label', {}, 'Read', el('input', { type: 'checkbox', name: 'read', checked: true })),
    el('label', {}, 'Write', el('input', { type: 'checkbox', name: 'write', checked: true })),
    el('label', {}, 'Expires in days', el('input', { type: 'number', name: 'days', min: 1, max: 3650 })),
    el('button', { type: 'submit' }, 'Create key'));
  const refresh = async () => {
    const { api_keys } = await api('GET', '/api/v1/api-keys');
    list.replaceChildren(...api_keys.map((k) => el('tr', { 'data-key': k.id },
      el('td', {}, k.name), el('td', {}, el('code', {}, `${k.prefix}…`)), el('td', {}, k.scopes.join(' ')),
      el('td', {}, when(k.created_at)), el('td', {}, when(k.expires_at)), el('td', {}, when(k.last_used_at)),
      el('td', {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : 'active'),
      el('td', {}, k.revoked_at ? '' : el('button', { onclick: async () => {
        try { await api('DELETE', `/api/v1/api-keys/${k.id}`); await refresh(); } catch (e) { message.replaceChildren(errorBox(e)); }
      } }, 'Revoke')))));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const scopes = ['read', 'write'].filter((s) => f.get(s));
    const body = { name: f.get('name'), scopes };
    if (f.get('days')) body.expires_in_days = Number(f.get('days'));
    try {
      const key = await api('POST', '/api/v1/api-keys', body);
      created.replaceChildren(el('div', { class: 'token', id: 'new-token' },
        el('p', {}, 'Copy this key now: it is shown only once.'), el('code', {}, key.token)));
      message.replaceChildren();
      form.reset();
      await refresh();
    } catch (e) { message.replaceChildren(errorBox(e)); }
  });
  main.replaceChildren(el('h1', {}, 'API keys'),
    el('p', { class: 'muted' }, 'Send a key as Authorization: Bearer <key>. Keys are stored hashed; revoking one takes effect at once.'),
    me.role === 'viewer' ? el('p', { class: 'muted' }, 'Viewers cannot create keys.') : form,
    created, message,
    el('table', {}, el('thead', {}, el('tr', {}, ...['Name', 'Key', 'Scopes', 'Created', 'Expires', 'Last used', 'Status', ''].map((h) => el('th', {}, h)))), list));
  await refresh();
}

async function showAudit() {
  const { entries } = await api('GET', '/api/v1/audit-log?limit=200');
  main.replaceChildren(el('h1', {}, 'Audit log'),
    el('table', { id: 'audit' }, el('thead', {}, el('tr', {}, ...['When', 'Who', 'How', 'Action', 'Target', 'Status', 'From', 'Request'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...entries.map((e) => el('tr', {},
        el('td', {}, when(e.at)), el('td', {}, e.actor_id ?? '—'), el('td', {}, e.actor_kind), el('td', {}, e.action),
        el('td', {}, e.target ? JSON.stringify(e.target) : ''), el('td', {}, e.status), el('td', {}, e.ip ?? ''), el('td', {}, el('code', {}, e.request_id ?? '')))))));
}

async function route() {
  try {
    if (location.hash === '#/audit-log' && me.role === 'admin') await showAudit();
    else await showKeys();
  } catch (e) {
    if (e.status === 401) return showLogin();
    main.replaceChildren(errorBox(e));
  }
}

async function start() {
  try {
    me = await api('GET', '/auth/me');
  } catch (e) {
    if (e.status === 401) return showLogin();
    main.replaceChildren(errorBox(e));
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-audit').hidden = me.role !== 'admin';
  document.getElementById('who').textContent = `${me.name} (${me.role})`;
  const logout = document.getElementById('logout');
  logout.hidden = false;
  logout.onclick = async () => {
    const { logout_url } = await api('POST', '/auth/logout', {});
    me = null;
    if (logout_url) location.assign(logout_url); else showLogin();
  };
  await route();
}

window.addEventListener('hashchange', () => me && route());
start();
