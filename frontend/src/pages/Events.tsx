// Events: browse what services sent (`GET /events`: service, time range, pages), follow new ones
// as they arrive (live tail), and manage the alert rules that turn matching events into alerts.
import { useEffect, useRef, useState } from 'preact/hooks';
import * as live from '../live';
import { api, query, type Page } from '../api';
import { fmtDate, fmtNumber, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, Table, runner, useEvery, useLoad } from '../ui';
import type { Channel } from './Channels';

type EventRow = { event_id: string; service: string; message: string; timestamp: string; metadata: Record<string, unknown> | null };
type EventPage = { data: EventRow[]; next_cursor: string | null };
type Rule = { id: string; name: string; service: string | null; match: Record<string, unknown>; enabled: boolean; max_per_minute: number; fired_count: number; suppressed_count: number; last_fired_at: string | null; channel_id: string | null; chat_id: string | null; integration_id: string | null };

const iso = (local: string) => (local ? new Date(local).toISOString() : undefined);

export function Events() {
  const [service, setService] = useState('');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [cursor, setCursor] = useState<string | undefined>(undefined);
  const [tail, setTail] = useState(false);
  const [rows, setRows] = useState<EventRow[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [failure, setFailure] = useState<unknown>(null);

  const { reload } = useLoad(async () => {
    try {
      const page = await api<EventPage>('GET', `/events${query({ service, from: iso(from), to: iso(to), cursor, limit: 100 })}`);
      setRows(page.data);
      setNext(page.next_cursor);
      setFailure(null);
    } catch (e) {
      setFailure(e);
    }
  }, [service, from, to, cursor]);

  // Live tail: the server announces each commit (`events.ingested`); the events after the
  // newest shown are then fetched (at most twice a second), newest kept on screen. A slow poll
  // covers a dropped stream.
  const fetchNew = async () => {
    const since = rows.length ? rows[rows.length - 1].timestamp : new Date(Date.now() - 60_000).toISOString();
    try {
      const page = await api<EventPage>('GET', `/events${query({ service, from: since, limit: 200 })}`);
      const seen = new Set(rows.map((r) => r.event_id));
      const fresh = page.data.filter((e) => !seen.has(e.event_id));
      if (fresh.length) setRows((shown) => [...shown, ...fresh.filter((e) => !shown.some((s) => s.event_id === e.event_id))].slice(-500));
      setFailure(null);
    } catch (e) {
      setFailure(e);
    }
  };
  const latest = useRef(fetchNew);
  latest.current = fetchNew;
  useEffect(() => {
    if (!tail) return;
    let pending: ReturnType<typeof setTimeout> | undefined;
    const off = live.on('events.ingested', (ev: { services?: string[] }) => {
      if (service && ev.services && !ev.services.includes(service)) return;
      pending ??= setTimeout(() => {
        pending = undefined;
        latest.current();
      }, 500);
    });
    return () => {
      off();
      clearTimeout(pending);
    };
  }, [tail, service]);
  useEvery(tail ? 5000 : null, fetchNew);

  return (
    <>
      <h1 tabIndex={-1}>{t('events.title')}</h1>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setCursor(undefined); reload(); }}>
        <Field label={t('events.service')}><input type="text" value={service} onChange={(e) => { setService(e.currentTarget.value); setCursor(undefined); }} /></Field>
        <Field label={t('events.from')}><input type="datetime-local" value={from} onChange={(e) => { setFrom(e.currentTarget.value); setCursor(undefined); }} /></Field>
        <Field label={t('events.to')}><input type="datetime-local" value={to} onChange={(e) => { setTo(e.currentTarget.value); setCursor(undefined); }} /></Field>
        <label class="check"><input type="checkbox" id="live-tail" checked={tail} onChange={(e) => setTail(e.currentTarget.checked)} />{t('events.tail')}</label>
      </form>
      <ErrorBox error={failure} />
      <div aria-live={tail ? 'polite' : 'off'}>
        <Table id="events" headers={[t('events.time'), t('events.service'), t('events.message'), t('events.metadata')]} empty={t('events.empty')}>
          {rows.map((e) => (
            <tr>
              <td>{fmtDate(e.timestamp)}</td>
              <td>{e.service}</td>
              <td>{e.message}</td>
              <td><code>{e.metadata ? JSON.stringify(e.metadata) : ''}</code></td>
            </tr>
          ))}
        </Table>
      </div>
      {!tail ? (
        <nav class="pager" aria-label={t('common.pages')}>
          <button type="button" disabled={!cursor} onClick={() => setCursor(undefined)}>{t('common.first')}</button>
          <button type="button" disabled={!next} onClick={() => setCursor(next!)}>{t('common.next')}</button>
        </nav>
      ) : null}
      <Rules />
    </>
  );
}

function Rules() {
  const me = useMe();
  const { data, error, reload } = useLoad(() =>
    Promise.all([api<Page<Rule>>('GET', '/api/v1/alert-rules'), api<Page<Channel>>('GET', '/api/v1/channels')]),
  );
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  const create = (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    const match: Record<string, string> = {};
    String(f.get('match') ?? '').split(',').map((p) => p.trim()).filter(Boolean).forEach((p) => {
      const [k, ...v] = p.split('=');
      match[k.trim()] = v.join('=').trim();
    });
    const body: Record<string, unknown> = { name: f.get('name'), service: f.get('service') || null, match, channel_id: f.get('channel_id'), chat_id: f.get('chat_id') };
    if (f.get('max_per_minute')) body.max_per_minute = Number(f.get('max_per_minute'));
    run(async () => {
      await api('POST', '/api/v1/alert-rules', body);
      form.reset();
    });
  };
  const rules = data?.[0].items ?? [];
  const channels = data?.[1].items ?? [];
  return (
    <section>
      <h2>{t('rules.title')}</h2>
      <p class="muted">{t('rules.help')}</p>
      {canWrite(me) && channels.length ? (
        <form id="new-rule" onSubmit={create}>
          <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
          <Field label={t('events.service')}><input type="text" name="service" /></Field>
          <Field label={t('rules.match')}><input type="text" name="match" placeholder="level=error, http.status=500" /></Field>
          <Field label={t('rules.channel')}><select name="channel_id">{channels.map((c) => <option value={c.id}>{c.name}</option>)}</select></Field>
          <Field label={t('rules.chat')}><input type="text" name="chat_id" required /></Field>
          <Field label={t('rules.maxPerMinute')}><input type="number" name="max_per_minute" min={1} /></Field>
          <button type="submit">{t('rules.create')}</button>
        </form>
      ) : null}
      <ErrorBox error={failure || error} />
      <Table id="rules" headers={[t('common.name'), t('events.service'), t('rules.match'), t('rules.fired'), t('rules.suppressed'), t('rules.lastFired'), t('rules.enabled'), '']} empty={data ? t('rules.empty') : false}>
        {rules.map((r) => (
          <tr data-rule={r.id}>
            <td>{r.name}</td>
            <td>{r.service ?? t('rules.anyService')}</td>
            <td><code>{Object.entries(r.match).map(([k, v]) => `${k}=${v}`).join(', ')}</code></td>
            <td>{fmtNumber(r.fired_count)}</td>
            <td>{fmtNumber(r.suppressed_count)}</td>
            <td>{fmtDate(r.last_fired_at)}</td>
            <td>
              <input type="checkbox" aria-label={t('rules.enabled')} checked={r.enabled} disabled={!canWrite(me)}
                onChange={(e) => { const enabled = e.currentTarget.checked; run(() => api('PATCH', `/api/v1/alert-rules/${r.id}`, { enabled })); }} />
            </td>
            <td>
              {canWrite(me) ? <ConfirmButton question={t('rules.deleteConfirm', { name: r.name })} onConfirm={() => run(() => api('DELETE', `/api/v1/alert-rules/${r.id}`))}>{t('common.delete')}</ConfirmButton> : null}
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}
