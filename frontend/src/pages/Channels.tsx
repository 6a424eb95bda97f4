// Channel accounts: link WhatsApp by scanning a QR (WhatsApp Web), or connect a WhatsApp Cloud
// API number, a Telegram bot or an outgoing webhook; see each one's state and pacing; remove one.
// A WhatsApp Web number shows its session: the QR while pairing (live, as it rotates), the
// pairing code, the linked phone, and why it stopped when it did. Secrets go in once and are never shown again;
// what the provider's side needs (WhatsApp's webhook URL and verify token, a webhook's signing
// secret) is shown once, right after.
import { useEffect, useState } from 'preact/hooks';
import { api, type Page } from '../api';
import { fmtDate, fmtNumber, t } from '../i18n';
import * as live from '../live';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, Qr, runner, ShownOnce, Table, useEvery, useLoad } from '../ui';

export type Channel = {
  id: string; kind: string; name: string; status: string; status_detail: string | null; username: string | null;
  webhook_path: string | null; created_at: string;
  limits: {
    per_second: number; burst: number; per_day: number | null; recipient_interval_ms: number; per_group_per_minute: number;
    gap_ms?: [number, number];
  } | null;
};

export type Session = {
  channel_id: string; state: string; qr: string | null; expires_at: string | null; pair_code: string | null;
  phone: string | null; push_name: string | null; since: string; detail: string | null; warning: string | null;
  restarts: number; awaiting_ack: number; sent_today: number; cap_today: number | null; linked_at: string | null;
};

const KINDS = ['whatsapp_web', 'whatsapp_cloud', 'telegram', 'webhook'] as const;

export function Channels() {
  const me = useMe();
  const { data, error, reload } = useLoad(() => api<Page<Channel>>('GET', '/api/v1/channels'));
  // A provider rejecting an account is announced live (`channel.status`); the poll covers the rest.
  useEffect(() => live.on('channel.status', () => reload()), []);
  useEvery(10_000, reload);
  const [kind, setKind] = useState<(typeof KINDS)[number]>('whatsapp_web');
  const [created, setCreated] = useState<any>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);

  const submit = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const body: Record<string, unknown> = { kind };
    new FormData(form).forEach((v, k) => {
      if (v !== '') body[k] = v;
    });
    try {
      setCreated(await api('POST', '/api/v1/channels', body));
      setFailure(null);
      form.reset();
      await reload();
    } catch (e) {
      setFailure(e);
    }
  };
  const remove = (c: Channel) => run(() => api('DELETE', `/api/v1/channels/${c.id}`));

  return (
    <>
      <h1 tabIndex={-1}>{t('channels.title')}</h1>
      <p class="muted">{t('channels.help')}</p>
      {canWrite(me) ? (
        <section>
          <h2>{t('channels.connect')}</h2>
          <div role="radiogroup" aria-label={t('channels.kind')} class="tabs">
            {KINDS.map((k) => (
              <label class="check">
                <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => setKind(k)} />
                {t(`channels.kinds.${k}`)}
              </label>
            ))}
          </div>
          {kind === 'whatsapp_web' ? (
            <form id="new-whatsapp-web" onSubmit={submit}>
              <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
              <Field label={t('channels.pairPhone')}>
                <input type="tel" name="pair_phone" placeholder="+34 600 000 000" autocomplete="off" />
              </Field>
              <p class="muted wide">{t('channels.webHelp')}</p>
              <button type="submit">{t('channels.linkButton')}</button>
            </form>
          ) : kind === 'whatsapp_cloud' ? (
            <form id="new-whatsapp" onSubmit={submit}>
              <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
              <Field label={t('channels.phoneNumberId')}><input type="text" name="phone_number_id" required inputMode="numeric" /></Field>
              <Field label={t('channels.accessToken')}><input type="password" name="access_token" required autocomplete="off" /></Field>
              <Field label={t('channels.appSecret')}><input type="password" name="app_secret" required autocomplete="off" /></Field>
              <button type="submit">{t('channels.connectButton')}</button>
            </form>
          ) : kind === 'telegram' ? (
            <form id="new-telegram" onSubmit={submit}>
              <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
              <Field label={t('channels.botToken')}><input type="password" name="bot_token" required autocomplete="off" placeholder="123456:ABC…" /></Field>
              <button type="submit">{t('channels.connectButton')}</button>
            </form>
          ) : (
            <form id="new-webhook" onSubmit={submit}>
              <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
              <Field label={t('channels.url')} wide><input type="url" name="url" required placeholder="https://" /></Field>
              <button type="submit">{t('channels.connectButton')}</button>
            </form>
          )}
        </section>
      ) : null}
      {created?.verify_token ? (
        <ShownOnce id="webhook-setup" text={t('channels.whatsappSetup')}>
          <p><code id="webhook-url">{location.origin + created.webhook_path}</code></p>
          <p><code id="verify-token">{created.verify_token}</code></p>
        </ShownOnce>
      ) : created?.signing_secret ? (
        <ShownOnce id="signing-secret" text={t('channels.signingSecret')}>
          <code>{created.signing_secret}</code>
        </ShownOnce>
      ) : created?.kind === 'whatsapp_web' ? (
        <p role="status">{t('channels.scanBelow', { name: created.name })}</p>
      ) : created ? (
        <p role="status">{t('channels.connected', { name: created.name })}</p>
      ) : null}
      <ErrorBox error={failure || error} />
      <Table
        id="channels"
        headers={[t('common.name'), t('channels.kind'), t('common.status'), t('channels.limits'), t('channels.webhook'), t('common.created'), '']}
        empty={data ? t('channels.empty') : false}
      >
        {data?.items.map((c) => (
          <tr data-channel={c.id}>
            <td>{c.name}{c.username ? <span class="muted"> @{c.username}</span> : null}</td>
            <td>{t(`channels.kinds.${c.kind}`, { defaultValue: c.kind })}</td>
            <td class={`status-${c.status}`}>
              {t(`channels.status.${c.status}`, { defaultValue: c.status })}
              {c.status_detail ? <span class="muted"> ({c.status_detail})</span> : null}
            </td>
            <td>
              {c.limits?.gap_ms
                ? t('channels.webLimitsText', {
                    min: fmtNumber(c.limits.gap_ms[0] / 1000, 1),
                    max: fmtNumber(c.limits.gap_ms[1] / 1000, 1),
                    gap: fmtNumber(c.limits.recipient_interval_ms / 1000, 1),
                    perDay: c.limits.per_day == null ? '∞' : fmtNumber(c.limits.per_day),
                  })
                : c.limits
                ? t('channels.limitsText', {
                    perSecond: fmtNumber(c.limits.per_second),
                    gap: fmtNumber(c.limits.recipient_interval_ms / 1000, 1),
                    perDay: c.limits.per_day == null ? '∞' : fmtNumber(c.limits.per_day),
                  })
                : '—'}
            </td>
            <td>{c.webhook_path ? <code>{location.origin + c.webhook_path}</code> : ''}</td>
            <td>{fmtDate(c.created_at)}</td>
            <td>
              {canWrite(me) ? (
                <ConfirmButton question={t('channels.removeConfirm', { name: c.name })} onConfirm={() => remove(c)}>
                  {t('common.delete')}
                </ConfirmButton>
              ) : null}
            </td>
          </tr>
        ))}
      </Table>
      {data?.items
        .filter((c) => c.kind === 'whatsapp_web')
        .map((c) => <WebSession channel={c} writable={canWrite(me)} />)}
    </>
  );
}

/** A WhatsApp Web number's session: QR or code while pairing, the phone once linked. */
function WebSession({ channel, writable }: { channel: Channel; writable: boolean }) {
  const path = `/api/v1/channels/${channel.id}/session`;
  const { data, error, reload } = useLoad(() => api<Session>('GET', path), [channel.id]);
  const [session, setSession] = useState<Session | undefined>(undefined);
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  useEffect(() => setSession(data), [data]);
  // Every change arrives live (`channel.session`): the QR as it rotates, the moment it links.
  useEffect(() => live.on('channel.session', (s: Session) => s.channel_id === channel.id && setSession(s)), [channel.id]);
  useEvery(15_000, reload);
  const s = session;
  const restart = (ev: Event) => {
    ev.preventDefault();
    const phone = (new FormData(ev.currentTarget as HTMLFormElement).get('pair_phone') as string).trim();
    run(() => api('POST', `${path}/restart`, phone ? { pair_phone: phone } : {}));
  };
  return (
    <section class="session" id={`session-${channel.id}`} aria-live="polite">
      <h2>{t('channels.sessionOf', { name: channel.name })}</h2>
      <ErrorBox error={failure || error} />
      {s ? (
        <>
          <p>
            <strong class={`session-state state-${s.state}`}>{t(`channels.session.${s.state}`, { defaultValue: s.state })}</strong>
            {s.phone ? <span> · {s.phone}</span> : null}
            {s.push_name ? <span class="muted"> ({s.push_name})</span> : null}
            {s.detail ? <span class="muted"> · {s.detail}</span> : null}
          </p>
          {s.state === 'connected' ? (
            <p class="muted">
              {s.cap_today == null
                ? t('channels.sentToday', { sent: fmtNumber(s.sent_today) })
                : t('channels.sentOfCap', { sent: fmtNumber(s.sent_today), cap: fmtNumber(s.cap_today) })}
            </p>
          ) : null}
          {s.warning ? <p role="alert" class="warning">{t('channels.banRisk')} {s.warning}</p> : null}
          {s.qr ? (
            <div class="pairing">
              <Qr value={s.qr} size={240} label={t('channels.qrLabel')} />
              <ol>
                <li>{t('channels.scan1')}</li>
                <li>{t('channels.scan2')}</li>
                <li>{t('channels.scan3')}</li>
              </ol>
              {s.expires_at ? <p class="muted">{t('channels.qrExpires', { when: fmtDate(s.expires_at) })}</p> : null}
            </div>
          ) : null}
          {s.pair_code ? (
            <p>
              {t('channels.typeCode')} <code class="pair-code">{s.pair_code}</code>
            </p>
          ) : null}
          {writable ? (
            <form class="inline" onSubmit={restart}>
              <Field label={t('channels.pairPhone')}>
                <input type="tel" name="pair_phone" placeholder="+34 600 000 000" autocomplete="off" />
              </Field>
              <button type="submit">{s.phone ? t('channels.reconnect') : t('channels.newQr')}</button>
              {s.phone ? (
                <ConfirmButton question={t('channels.unlinkConfirm', { name: channel.name })} onConfirm={() => run(() => api('POST', `${path}/logout`))}>
                  {t('channels.unlink')}
                </ConfirmButton>
              ) : null}
            </form>
          ) : null}
        </>
      ) : null}
    </section>
  );
}
