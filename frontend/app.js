// Pregonero dashboard: sign-in (Keycloak or local), WhatsApp campaigns (numbers, contacts and CSV
// imports, templates with media, campaigns with live counters and the per-recipient ledger,
// monthly KPIs), API keys, audit log.
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

// Sends a file as the raw request body (media, CSV imports).
async function upload(path, file, contentType) {
  const res = await fetch(path, {
    method: 'POST', credentials: 'same-origin', body: file,
    headers: { Accept: 'application/json', 'Content-Type': contentType || file.type || 'application/octet-stream', 'X-CSRF-Token': me?.csrf_token ?? '' },
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw Object.assign(new Error(data?.message || res.statusText), { status: res.status, code: data?.error, data });
  return data;
}

const when = (t) => (t ? new Date(t).toLocaleString() : '—');
// Views that refresh themselves stop when the route changes.
let refreshTimer = null;
const every = (ms, fn) => { clearInterval(refreshTimer); refreshTimer = setInterval(() => fn().catch(() => clearInterval(refreshTimer)), ms); };
const canWrite = () => me.role !== 'viewer';
// `body`: rows, or a <tbody> the page refreshes itself.
const table = (id, headers, body) => el('table', { id }, el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))),
  body instanceof Node ? body : el('tbody', {}, ...body));
const kpi = (label, value, id) => el('div', { class: 'kpi', id }, el('span', { class: 'muted' }, label), el('strong', {}, String(value)));
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
    const { items: api_keys } = await api('GET', '/api/v1/api-keys');
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
  const { items: entries } = await api('GET', '/api/v1/audit-log?limit=200');
  main.replaceChildren(el('h1', {}, 'Audit log'),
    el('table', { id: 'audit' }, el('thead', {}, el('tr', {}, ...['When', 'Who', 'How', 'Action', 'Target', 'Status', 'From', 'Request'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...entries.map((e) => el('tr', {},
        el('td', {}, when(e.at)), el('td', {}, e.actor_id ?? '—'), el('td', {}, e.actor_kind), el('td', {}, e.action),
        el('td', {}, e.target ? JSON.stringify(e.target) : ''), el('td', {}, e.status), el('td', {}, e.ip ?? ''), el('td', {}, el('code', {}, e.request_id ?? '')))))));
}


async function showDashboard() {
  const [month, groups, timeline] = await Promise.all([
    api('GET', '/api/v1/dashboard/current-month'),
    api('GET', '/api/v1/dashboard/by-group'),
    api('GET', '/api/v1/dashboard/timeline?days=14'),
  ]);
  main.replaceChildren(el('h1', {}, `This month (${month.month})`),
    el('div', { class: 'kpis' }, kpi('Sent', month.sent, 'kpi-sent'), kpi('Errors', month.errors, 'kpi-errors'),
      kpi('Success rate', `${Math.round(month.success_rate * 10) / 10} %`), kpi('Daily average', Math.round(month.daily_average * 10) / 10)),
    el('h2', {}, 'By group'),
    table('by-group', ['Group', 'Sent', 'Errors'], groups.groups.map((g) => el('tr', {}, el('td', {}, g.group ?? '—'), el('td', {}, g.sent), el('td', {}, g.errors)))),
    el('h2', {}, 'Last 14 days'),
    table('timeline', ['Day', 'Sent', 'Errors'], timeline.days.map((d) => el('tr', {}, el('td', {}, d.date), el('td', {}, d.sent), el('td', {}, d.errors)))));
}

async function showChannels() {
  const message = el('div');
  const created = el('div');
  const list = el('tbody');
  const refresh = async () => {
    const { items } = await api('GET', '/api/v1/channels');
    list.replaceChildren(...items.map((c) => el('tr', { 'data-channel': c.id },
      el('td', {}, c.name), el('td', {}, c.kind), el('td', { class: `status-${c.status}` }, c.status),
      el('td', {}, c.webhook_path ? el('code', {}, location.origin + c.webhook_path) : ''), el('td', {}, when(c.created_at)))));
  };
  const form = el('form', { id: 'new-whatsapp' },
    el('label', {}, 'Name', el('input', { type: 'text', name: 'name', required: true, maxlength: 100 })),
    el('label', {}, 'Phone number ID', el('input', { type: 'text', name: 'phone_number_id', required: true, inputmode: 'numeric' })),
    el('label', {}, 'Access token', el('input', { type: 'password', name: 'access_token', required: true, autocomplete: 'off' })),
    el('label', {}, 'App secret', el('input', { type: 'password', name: 'app_secret', required: true, autocomplete: 'off' })),
    el('button', { type: 'submit' }, 'Connect'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    try {
      const ch = await api('POST', '/api/v1/channels', { kind: 'whatsapp_cloud', name: f.get('name'), phone_number_id: f.get('phone_number_id'), access_token: f.get('access_token'), app_secret: f.get('app_secret') });
      created.replaceChildren(el('div', { class: 'token', id: 'webhook-setup' },
        el('p', {}, 'In Meta\'s app dashboard, set the webhook to this URL and verify token (shown once):'),
        el('p', {}, el('code', { id: 'webhook-url' }, location.origin + ch.webhook_path)),
        el('p', {}, el('code', { id: 'verify-token' }, ch.verify_token))));
      message.replaceChildren();
      form.reset();
      await refresh();
    } catch (e) { message.replaceChildren(errorBox(e)); }
  });
  main.replaceChildren(el('h1', {}, 'Channels'),
    el('p', { class: 'muted' }, 'WhatsApp Cloud API numbers and Telegram bots. Secrets are stored encrypted and never shown again.'),
    canWrite() ? el('div', {}, el('h2', {}, 'Connect a WhatsApp number'), form) : '', created, message,
    table('channels', ['Name', 'Kind', 'Status', 'Webhook', 'Added'], list));
  await refresh();
}

async function showContacts() {
  const message = el('div');
  const progress = el('div', { id: 'import-progress' });
  const list = el('tbody');
  const refresh = async () => {
    const { items: contacts } = await api('GET', '/api/v1/contacts?limit=100');
    list.replaceChildren(...contacts.map((c) => el('tr', {},
      el('td', {}, c.name ?? ''), el('td', {}, c.noun ?? ''), el('td', {}, c.phone ?? ''), el('td', {}, c.group ?? ''),
      el('td', {}, c.opted_out ? 'opted out' : ''))));
  };
  const form = el('form', { id: 'import' },
    el('label', {}, 'CSV file (nombre, sustantivo, grupo, telefono…)', el('input', { type: 'file', name: 'file', accept: '.csv,text/csv', required: true })),
    el('label', {}, 'Region for numbers without +country', el('input', { type: 'text', name: 'region', value: 'ES', size: 3, maxlength: 2 })),
    el('button', { type: 'submit' }, 'Import'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = form.elements.file.files[0];
    const region = encodeURIComponent(form.elements.region.value || 'ES');
    try {
      let imp = await upload(`/api/v1/contacts/imports?filename=${encodeURIComponent(file.name)}&default_region=${region}`, file, 'text/csv');
      message.replaceChildren();
      const show = () => progress.replaceChildren(el('p', { 'data-status': imp.status },
        `Import ${imp.status}: ${imp.imported} imported, ${imp.failed} refused${imp.total_rows ? ` of ${imp.total_rows} rows` : ''}. `,
        imp.failed > 0 && imp.status !== 'running' ? el('a', { href: imp.errors_url, id: 'import-errors', download: 'errors.csv' }, 'Download the refused rows (CSV)') : '',
        imp.error ? el('span', { class: 'error' }, imp.error) : ''));
      show();
      while (imp.status === 'running') {
        await new Promise((r) => setTimeout(r, 300));
        imp = await api('GET', `/api/v1/contacts/imports/${imp.id}`);
        show();
      }
      await refresh();
    } catch (e) { message.replaceChildren(errorBox(e)); }
  });
  main.replaceChildren(el('h1', {}, 'Contacts'), canWrite() ? form : '', progress, message,
    table('contacts', ['Name', 'Sustantivo', 'Phone', 'Group', ''], list));
  await refresh();
}

async function showTemplates() {
  const message = el('div');
  const preview = el('div', { id: 'preview' });
  const list = el('tbody');
  const { items: contacts } = await api('GET', '/api/v1/contacts?limit=50');
  const refresh = async () => {
    const { items: templates } = await api('GET', '/api/v1/templates');
    list.replaceChildren(...templates.map((t) => el('tr', { 'data-template': t.id },
      el('td', {}, t.name), el('td', {}, t.body), el('td', {}, (t.variables ?? []).join(', ')),
      el('td', {}, t.media_id ? el('a', { href: `/api/v1/media/${t.media_id}/content`, target: '_blank' }, 'media') : ''),
      el('td', {}, contacts.length ? el('button', { class: 'preview', onclick: async () => {
        try {
          const r = await api('POST', `/api/v1/templates/${t.id}/preview`, { contact_id: contacts[0].id });
          preview.replaceChildren(el('p', {}, `For ${contacts[0].name ?? contacts[0].phone}: `, el('q', {}, r.text)));
        } catch (e) { preview.replaceChildren(errorBox(e)); }
      } }, 'Preview') : ''))));
  };
  const form = el('form', { id: 'new-template' },
    el('label', {}, 'Name', el('input', { type: 'text', name: 'name', required: true, maxlength: 100 })),
    el('label', { class: 'wide' }, 'Text ({{ nombre }}, {{ sustantivo }}, {{ grupo }}, any attribute)', el('textarea', { name: 'body', rows: 3, required: true })),
    el('label', {}, 'Image or document (optional)', el('input', { type: 'file', name: 'media', accept: 'image/jpeg,image/png,application/pdf,video/mp4' })),
    el('button', { type: 'submit' }, 'Save template'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: form.elements.name.value, body: form.elements.body.value };
      const file = form.elements.media.files[0];
      if (file) body.media_id = (await upload(`/api/v1/media?channel=whatsapp&filename=${encodeURIComponent(file.name)}`, file)).id;
      await api('POST', '/api/v1/templates', body);
      message.replaceChildren();
      form.reset();
      await refresh();
    } catch (e) { message.replaceChildren(errorBox(e)); }
  });
  main.replaceChildren(el('h1', {}, 'Templates'), canWrite() ? form : '', message, preview,
    table('templates', ['Name', 'Text', 'Variables', 'Media', ''], list));
  await refresh();
}

const counterNames = ['total', 'pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped'];

async function showCampaigns() {
  const message = el('div');
  const [{ items }, { items: channels }, { items: templates }] = await Promise.all([
    api('GET', '/api/v1/campaigns'), api('GET', '/api/v1/channels'), api('GET', '/api/v1/templates')]);
  const form = el('form', { id: 'new-campaign' },
    el('label', {}, 'Name', el('input', { type: 'text', name: 'name', required: true, maxlength: 100 })),
    el('label', {}, 'Channel', el('select', { name: 'channel', required: true }, ...channels.map((c) => el('option', { value: c.id }, `${c.name} (${c.kind})`)))),
    el('label', {}, 'Template', el('select', { name: 'template', required: true }, ...templates.map((t) => el('option', { value: t.id }, t.name)))),
    el('label', {}, 'Groups (comma separated; empty = everyone)', el('input', { type: 'text', name: 'groups' })),
    el('label', {}, 'Start now', el('input', { type: 'checkbox', name: 'start', checked: true })),
    el('button', { type: 'submit' }, 'Create campaign'));
  // A start refused for missing variables leaves the draft; "skip" starts that same draft.
  const refused = (e) => {
    if (e.code !== 'missing-variables') return message.replaceChildren(errorBox(e));
    const affected = e.data?.contacts ?? [];
    message.replaceChildren(el('div', { class: 'error', role: 'alert', id: 'missing' },
      el('p', {}, e.message),
      el('ul', {}, ...affected.map((c) => el('li', {}, `${c.phone}: missing ${c.missing.join(', ')}`))),
      el('button', { id: 'skip-missing', onclick: async () => {
        try {
          await api('POST', `/api/v1/campaigns/${e.data.campaign_id}/start?skip_missing=true`, {});
          location.hash = `#/campaigns/${e.data.campaign_id}`;
        } catch (again) { refused(again); }
      } }, 'Send to the others, skipping these')));
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const groups = f.groups.value.split(',').map((g) => g.trim()).filter(Boolean);
    const body = { name: f.name.value, channel_id: f.channel.value, template_id: f.template.value, start: f.start.checked };
    if (groups.length) body.audience = { groups };
    try {
      const c = await api('POST', '/api/v1/campaigns', body);
      location.hash = `#/campaigns/${c.id}`;
    } catch (e) { refused(e); }
  });
  main.replaceChildren(el('h1', {}, 'Campaigns'),
    canWrite() ? (templates.length && channels.length ? form : el('p', { class: 'muted' }, 'Connect a channel and write a template first.')) : '', message,
    table('campaigns', ['Name', 'Status', 'Progress', 'Sent', 'Delivered', 'Read', 'Failed', 'Created'], items.map((c) => el('tr', {},
      el('td', {}, el('a', { href: `#/campaigns/${c.id}` }, c.name)), el('td', {}, c.status), el('td', {}, `${Math.floor(c.progress)} %`),
      el('td', {}, c.counters.sent), el('td', {}, c.counters.delivered), el('td', {}, c.counters.read), el('td', {}, c.counters.failed), el('td', {}, when(c.created_at))))));
}

async function showCampaign(id) {
  const message = el('div');
  const head = el('div');
  const counters = el('div', { class: 'kpis', id: 'counters' });
  const bar = el('progress', { max: 100, value: 0, id: 'progress' });
  const actions = el('div', { id: 'actions' });
  const list = el('tbody');
  let pace = 0;
  const act = (label, action) => el('button', { 'data-action': action, onclick: async () => {
    try { await api('POST', `/api/v1/campaigns/${id}/${action}`, {}); await refresh(); } catch (e) { message.replaceChildren(errorBox(e)); }
  } }, label);
  const refresh = async () => {
    const [c, ledger] = await Promise.all([api('GET', `/api/v1/campaigns/${id}`), api('GET', `/api/v1/campaigns/${id}/recipients?limit=100`)]);
    head.replaceChildren(el('h1', {}, c.name), el('p', {}, 'Status: ', el('strong', { id: 'campaign-status' }, c.status), c.status_detail ? ` (${c.status_detail})` : ''));
    counters.replaceChildren(...counterNames.map((n) => kpi(n, c.counters[n], `count-${n}`)));
    bar.value = c.progress;
    const buttons = [];
    if (canWrite()) {
      if (c.status === 'draft') buttons.push(act('Start', 'start'));
      if (['running', 'scheduled'].includes(c.status)) buttons.push(act('Pause', 'pause'));
      if (c.status === 'paused') buttons.push(act('Resume', 'resume'));
      if (!['completed', 'cancelled'].includes(c.status)) buttons.push(act('Cancel', 'cancel'));
      if (c.counters.failed > 0) buttons.push(act('Retry failed', 'retry-failed'));
    }
    actions.replaceChildren(...buttons);
    // A sent message's receipts refine its status: delivered, then read.
    const shown = (r) => (r.status === 'sent' && r.read_at ? 'read' : r.status === 'sent' && r.delivered_at ? 'delivered' : r.status);
    list.replaceChildren(...ledger.items.map((r) => el('tr', { 'data-status': shown(r) },
      el('td', {}, r.recipient), el('td', {}, shown(r)), el('td', {}, r.attempts), el('td', {}, r.error_code ?? ''),
      el('td', {}, when(r.sent_at)), el('td', {}, when(r.delivered_at)), el('td', {}, when(r.read_at)))));
    // Receipts (delivered, read) keep coming after the last send: a finished campaign is still
    // refreshed, less often. A refresh that lands after the view was left sets no timer.
    const next = ['completed', 'cancelled'].includes(c.status) ? 5000 : 1000;
    if (next !== pace && counters.isConnected) { pace = next; every(pace, refresh); }
  };
  main.replaceChildren(head, bar, counters, actions, message, el('h2', {}, 'Recipients'),
    table('recipients', ['Recipient', 'Status', 'Attempts', 'Error', 'Sent', 'Delivered', 'Read'], list));
  await refresh();
}

async function route() {
  clearInterval(refreshTimer);
  const [, page, id] = location.hash.split('/');
  try {
    if (page === 'audit-log' && me.role === 'admin') await showAudit();
    else if (page === 'api-keys') await showKeys();
    else if (page === 'channels') await showChannels();
    else if (page === 'contacts') await showContacts();
    else if (page === 'templates') await showTemplates();
    else if (page === 'campaigns' && id) await showCampaign(id);
    else if (page === 'campaigns') await showCampaigns();
    else await showDashboard();
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
