// Integrations (Pingui alerts): a token per integration, bound to a Telegram chat through a deep
// link (shown as a QR code too), with a daily quota; revoke.
import { useState } from 'preact/hooks';
import { api, type Page } from '../api';
import { fmtDate, fmtNumber, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, Qr, runner, ShownOnce, Table, useLoad } from '../ui';
import type { Channel } from './Channels';

type Integration = { id: string; name: string; channel_id: string; chat_id: string | null; status: string; daily_quota: number; remaining_today: number; scopes: string[]; created_at: string; link_expires_at: string | null };
type Link = { url: string; expires_at: string };

export function Integrations() {
  const me = useMe();
  const { data, error, reload } = useLoad(() =>
    Promise.all([api<Page<Integration>>('GET', '/api/v1/integrations'), api<Page<Channel>>('GET', '/api/v1/channels')]),
  );
  const [created, setCreated] = useState<{ token?: string; link: Link; name: string } | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  if (!data) return error ? <ErrorBox error={error} /> : null;
  const [integrations, channels] = [data[0].items, data[1].items.filter((c) => c.kind === 'telegram')];

  const create = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    const body: Record<string, unknown> = { name: f.get('name'), channel_id: f.get('channel_id') };
    if (f.get('daily_quota')) body.daily_quota = Number(f.get('daily_quota'));
    try {
      const r = await api<{ integration: Integration; link: Link; token: { token: string } }>('POST', '/api/v1/integrations', body);
      setCreated({ token: r.token.token, link: r.link, name: r.integration.name });
      setFailure(null);
      form.reset();
      await reload();
    } catch (e) {
      setFailure(e);
    }
  };
  const link = async (i: Integration) => {
    try {
      const r = await api<{ link: Link }>('POST', `/api/v1/integrations/${i.id}/link`, {});
      setCreated({ link: r.link, name: i.name });
    } catch (e) {
      setFailure(e);
    }
  };
  const revoke = (i: Integration) => run(() => api('DELETE', `/api/v1/integrations/${i.id}`));
  return (
    <>
      <h1 tabIndex={-1}>{t('integrations.title')}</h1>
      <p class="muted">{t('integrations.help')}</p>
      {canWrite(me) ? (
        channels.length ? (
          <form id="new-integration" onSubmit={create}>
            <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
            <Field label={t('integrations.bot')}>
              <select name="channel_id">{channels.map((c) => <option value={c.id}>{c.name}</option>)}</select>
            </Field>
            <Field label={t('integrations.dailyQuota')}><input type="number" name="daily_quota" min={1} /></Field>
            <button type="submit">{t('integrations.create')}</button>
          </form>
        ) : (
          <p class="muted">{t('integrations.needBot')}</p>
        )
      ) : null}
      {created ? (
        <ShownOnce id="integration-created" text={created.token ? t('integrations.tokenOnce') : t('integrations.linkFor', { name: created.name })}>
          {created.token ? <p><code id="integration-token">{created.token}</code></p> : null}
          <p>
            <a id="deep-link" href={created.link.url} target="_blank" rel="noopener">{created.link.url}</a>{' '}
            <span class="muted">{t('integrations.linkExpires', { when: fmtDate(created.link.expires_at) })}</span>
          </p>
          <Qr value={created.link.url} label={t('integrations.qrLabel')} />
        </ShownOnce>
      ) : null}
      <ErrorBox error={failure || error} />
      <Table
        id="integrations"
        headers={[t('common.name'), t('common.status'), t('integrations.chat'), t('integrations.quota'), t('common.created'), '']}
        empty={t('integrations.empty')}
      >
        {integrations.map((i) => (
          <tr data-integration={i.id}>
            <td>{i.name}</td>
            <td>{t(`integrations.status.${i.status}`, { defaultValue: i.status })}</td>
            <td>{i.chat_id ?? '—'}</td>
            <td>{t('integrations.remaining', { remaining: fmtNumber(i.remaining_today), quota: fmtNumber(i.daily_quota) })}</td>
            <td>{fmtDate(i.created_at)}</td>
            <td class="actions">
              {canWrite(me) && i.status !== 'revoked' ? (
                <>
                  <button type="button" onClick={() => link(i)}>{t('integrations.newLink')}</button>
                  <ConfirmButton question={t('integrations.revokeConfirm', { name: i.name })} onConfirm={() => revoke(i)}>{t('keys.revoke')}</ConfirmButton>
                </>
              ) : null}
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}
