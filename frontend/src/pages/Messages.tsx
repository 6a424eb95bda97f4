// "Mensajes", as the seed had it: a CSV of recipients, a text with variables, an optional image
// or document, and send. It is the seed's `POST /send-messages`: the server imports the rows,
// starts a campaign, and this page follows it.
import { useState } from 'preact/hooks';
import { api, postForm, type Page } from '../api';
import { t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ErrorBox, Field, useEvery, useLiveReload, useLoad } from '../ui';
import type { Channel } from './Channels';
import { progressText, type Campaign } from './Campaigns';

type Result = { campaignId: string; queued: number; skipped: number; invalidRows: number };

export function Messages() {
  const me = useMe();
  const { data: channels } = useLoad(() => api<Page<Channel>>('GET', '/api/v1/channels'));
  const [result, setResult] = useState<Result | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const whatsapp = channels?.items.filter((c) => c.kind.startsWith('whatsapp')) ?? [];

  const send = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const fd = new FormData(form);
    // Leave out what was not filled in (no media chosen, no name).
    for (const [k, v] of [...fd.entries()]) if ((v instanceof File && v.size === 0) || v === '') fd.delete(k);
    setBusy(true);
    try {
      setResult(await postForm<Result>('/send-messages', fd));
      setFailure(null);
    } catch (e) {
      setFailure(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <h1 tabIndex={-1}>{t('messages.title')}</h1>
      <p class="muted">{t('messages.help')}</p>
      {!canWrite(me) ? null : channels && !whatsapp.length ? (
        <p class="muted">{t('messages.needWhatsapp')} <a href="#/channels">{t('nav.channels')}</a></p>
      ) : (
        <form id="send-messages" onSubmit={send}>
          <Field label={t('messages.csv')}><input type="file" name="file" accept=".csv,text/csv" required /></Field>
          <Field label={t('messages.channel')}>
            <select name="channel_id">{whatsapp.map((c) => <option value={c.id}>{c.name}</option>)}</select>
          </Field>
          <Field label={t('messages.name')}><input type="text" name="name" maxLength={100} /></Field>
          <Field label={t('messages.text')} wide><textarea name="message" rows={4} required maxLength={4096} placeholder={t('messages.placeholder')} /></Field>
          <Field label={t('templates.media')}><input type="file" name="media" accept="image/jpeg,image/png,application/pdf,video/mp4" /></Field>
          <button type="submit" disabled={busy} aria-busy={busy}>{busy ? t('messages.sending') : t('messages.send')}</button>
        </form>
      )}
      <ErrorBox error={failure} />
      <div aria-live="polite">
        {result ? (
          <div class="card" id="send-result">
            <p>{t('messages.result', { queued: result.queued, skipped: result.skipped, invalid: result.invalidRows })}</p>
            <Progress id={result.campaignId} />
            <a href={`#/campaigns/${result.campaignId}`}>{t('messages.follow')}</a>
          </div>
        ) : null}
      </div>
    </>
  );
}

/** The campaign's progress, refreshed by its live events (and a slow poll). */
function Progress({ id }: { id: string }) {
  const { data, reload } = useLoad(() => api<Campaign>('GET', `/api/v1/campaigns/${id}`), [id]);
  useLiveReload('message.status', reload, (ev) => ev?.campaign_id === id, [id]);
  useEvery(data && ['completed', 'cancelled'].includes(data.status) ? null : 3000, reload);
  if (!data) return null;
  return (
    <div class="progress-line" aria-live="polite">
      <progress max={100} value={data.progress} aria-label={t('campaigns.progress')} />
      <span id="send-progress">
        {progressText(data)}
        {' · '}
        {t(`campaigns.status.${data.status}`, { defaultValue: data.status })}
      </span>
    </div>
  );
}
