// Campaigns: the list, and the compose form (channel, a saved template or a text, media,
// audience, schedule and send window, a provider template for WhatsApp outside the 24-hour
// window). A start refused for contacts missing a variable lists them and offers to send to the
// others.
import { useState } from 'preact/hooks';
import { api, query, upload, type Page } from '../api';
import { fmtDate, fmtNumber, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ErrorBox, Field, Table, useEvery, useLoad } from '../ui';
import type { Channel } from './Channels';

export type Counters = { total: number; pending: number; queued: number; sent: number; delivered: number; read: number; failed: number; skipped: number };
export type Campaign = {
  id: string; name: string; status: string; status_detail: string | null; progress: number; counters: Counters;
  created_at: string; started_at: string | null; finished_at: string | null; scheduled_at: string | null; channel_id: string; body: string;
};

/** "42 % (420 of 1,000)": a campaign's progress, as its page and Mensajes show it. */
export function progressText(c: Campaign): string {
  const n = c.counters;
  return t('campaigns.progressText', { percent: Math.floor(c.progress), done: fmtNumber(n.total - n.pending - n.queued), total: fmtNumber(n.total) });
}

export function Campaigns() {
  const me = useMe();
  const [status, setStatus] = useState('');
  const { data, error, reload } = useLoad(
    () =>
      Promise.all([
        api<Page<Campaign>>('GET', `/api/v1/campaigns${query({ status, limit: 100 })}`),
        api<Page<Channel>>('GET', '/api/v1/channels'),
        api<Page<{ id: string; name: string }>>('GET', '/api/v1/templates'),
      ]),
    [status],
  );
  useEvery(5000, reload);
  if (!data) return error ? <ErrorBox error={error} /> : null;
  const [campaigns, channels, templates] = [data[0].items, data[1].items, data[2].items];
  return (
    <>
      <h1 tabIndex={-1}>{t('campaigns.title')}</h1>
      {canWrite(me) ? (
        channels.length ? <Compose channels={channels} templates={templates} /> : <p class="muted">{t('campaigns.needChannel')}</p>
      ) : null}
      <h2>{t('campaigns.list')}</h2>
      <Field label={t('common.status')}>
        <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="">{t('contacts.all')}</option>
          {['draft', 'preparing', 'scheduled', 'running', 'paused', 'completed', 'cancelled'].map((s) => <option value={s}>{t(`campaigns.status.${s}`)}</option>)}
        </select>
      </Field>
      <ErrorBox error={error} />
      <Table
        id="campaigns"
        headers={[t('common.name'), t('common.status'), t('campaigns.progress'), t('campaigns.counters.sent'), t('campaigns.counters.delivered'), t('campaigns.counters.read'), t('campaigns.counters.failed'), t('common.created')]}
        empty={t('campaigns.empty')}
      >
        {campaigns.map((c) => (
          <tr>
            <td><a href={`#/campaigns/${c.id}`}>{c.name}</a></td>
            <td>{t(`campaigns.status.${c.status}`, { defaultValue: c.status })}</td>
            <td><progress max={100} value={c.progress} aria-label={c.name} /> {Math.floor(c.progress)} %</td>
            <td>{fmtNumber(c.counters.sent)}</td>
            <td>{fmtNumber(c.counters.delivered)}</td>
            <td>{fmtNumber(c.counters.read)}</td>
            <td>{fmtNumber(c.counters.failed)}</td>
            <td>{fmtDate(c.created_at)}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}

/** The error of a start refused for missing variables, with the way on. */
export function Missing({ error, onSkip }: { error: any; onSkip: () => void }) {
  const affected: { phone: string; missing: string[] }[] = error.data?.contacts ?? [];
  return (
    <div class="error" role="alert" id="missing">
      <p>{t('campaigns.missingVariables', { count: affected.length })}</p>
      <ul>
        {affected.map((c) => <li>{t('campaigns.missingOne', { phone: c.phone, names: c.missing.join(', ') })}</li>)}
      </ul>
      <button type="button" id="skip-missing" onClick={onSkip}>{t('campaigns.skipMissing')}</button>
    </div>
  );
}

function Compose({ channels, templates }: { channels: Channel[]; templates: { id: string; name: string }[] }) {
  const [source, setSource] = useState<'template' | 'text'>(templates.length ? 'template' : 'text');
  const [channelId, setChannelId] = useState(channels[0].id);
  const [failure, setFailure] = useState<any>(null);
  const channel = channels.find((c) => c.id === channelId);

  const startSkipping = async (campaignId: string) => {
    try {
      await api('POST', `/api/v1/campaigns/${campaignId}/start?skip_missing=true`, {});
      location.hash = `#/campaigns/${campaignId}`;
    } catch (e) {
      setFailure(e);
    }
  };
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const f = (ev.currentTarget as HTMLFormElement).elements as any;
    const groups = String(f.groups.value).split(',').map((g: string) => g.trim()).filter(Boolean);
    const body: Record<string, unknown> = { name: f.name.value, channel_id: channelId, start: f.start.checked };
    if (source === 'template') body.template_id = f.template.value;
    else body.body = f.body.value;
    if (groups.length) body.audience = { groups };
    if (f.scheduled.value) body.scheduled_at = new Date(f.scheduled.value).toISOString();
    if (f.window_start.value && f.window_end.value) {
      body.send_window = { start: f.window_start.value, end: f.window_end.value, utc_offset_minutes: -new Date().getTimezoneOffset() };
    }
    if (f.provider_template?.value) {
      body.provider_template = {
        name: f.provider_template.value,
        language: f.provider_language.value || 'es',
        params: String(f.provider_params.value).split(',').map((p: string) => p.trim()).filter(Boolean),
      };
    }
    try {
      const file: File | undefined = f.media?.files?.[0];
      if (file) body.media_id = (await upload<{ id: string }>(`/api/v1/media${query({ channel: channel?.kind.startsWith('whatsapp') ? 'whatsapp' : 'telegram', filename: file.name })}`, file)).id;
      const c = await api<Campaign>('POST', '/api/v1/campaigns', body);
      location.hash = `#/campaigns/${c.id}`;
    } catch (e) {
      setFailure(e);
    }
  };
  return (
    <section>
      <h2>{t('campaigns.new')}</h2>
      <form id="new-campaign" onSubmit={submit}>
        <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
        <Field label={t('campaigns.channel')}>
          <select name="channel" required value={channelId} onChange={(e) => setChannelId(e.currentTarget.value)}>
            {channels.map((c) => <option value={c.id}>{`${c.name} (${t(`channels.kinds.${c.kind}`, { defaultValue: c.kind })})`}</option>)}
          </select>
        </Field>
        <fieldset>
          <legend>{t('campaigns.message')}</legend>
          <label class="check"><input type="radio" name="source" checked={source === 'template'} disabled={!templates.length} onChange={() => setSource('template')} />{t('campaigns.fromTemplate')}</label>
          <label class="check"><input type="radio" name="source" checked={source === 'text'} onChange={() => setSource('text')} />{t('campaigns.fromText')}</label>
          {source === 'template' ? (
            <Field label={t('campaigns.template')}>
              <select name="template" required>{templates.map((tpl) => <option value={tpl.id}>{tpl.name}</option>)}</select>
            </Field>
          ) : (
            <>
              <Field label={t('templates.text')} wide><textarea name="body" rows={3} required maxLength={4096} /></Field>
              <Field label={t('templates.media')}><input type="file" name="media" accept="image/jpeg,image/png,application/pdf,video/mp4" /></Field>
            </>
          )}
        </fieldset>
        <Field label={t('campaigns.groups')}><input type="text" name="groups" /></Field>
        <Field label={t('campaigns.scheduledAt')}><input type="datetime-local" name="scheduled" /></Field>
        <Field label={t('campaigns.windowStart')}><input type="time" name="window_start" /></Field>
        <Field label={t('campaigns.windowEnd')}><input type="time" name="window_end" /></Field>
        {channel?.kind === 'whatsapp_cloud' ? (
          <fieldset>
            <legend>{t('campaigns.providerTemplate')}</legend>
            <p class="muted">{t('campaigns.providerTemplateHelp')}</p>
            <Field label={t('common.name')}><input type="text" name="provider_template" /></Field>
            <Field label={t('campaigns.language')}><input type="text" name="provider_language" placeholder="es" size={5} /></Field>
            <Field label={t('campaigns.params')}><input type="text" name="provider_params" placeholder="{{ nombre }}, …" /></Field>
          </fieldset>
        ) : null}
        <label class="check"><input type="checkbox" name="start" checked />{t('campaigns.startNow')}</label>
        <button type="submit">{t('campaigns.create')}</button>
      </form>
      {failure?.code === 'missing-variables' ? (
        <Missing error={failure} onSkip={() => startSkipping(failure.data.campaign_id)} />
      ) : (
        <ErrorBox error={failure} />
      )}
    </section>
  );
}
