// Trading signals: the webhook profile (plan, quota, the webhook URL and its token, rotated with
// a grace period) and the signals received, with filters and the trader's verdict.
import { useState } from 'preact/hooks';
import { api, query, type Page } from '../api';
import { fmtDate, fmtNumber, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, ShownOnce, Table, runner, useEvery, useLoad } from '../ui';

type Profile = { plan: string; signals_quota: number; signals_used: number; quota_reset_at: string; has_token: boolean; webhook_enabled: boolean; webhook_last_used: string | null; snapshots_enabled: boolean };
type Signal = { id: string; timestamp: string; ticker: string | null; signal_type: string | null; indicator: string | null; timeframe: string | null; price: number | null; result: string; profit_loss: number | null; screenshot_status: string; screenshot_url: string | null; parse_error: string | null; raw: string };

export function Signals() {
  const me = useMe();
  const [ticker, setTicker] = useState('');
  const [type, setType] = useState('');
  const [result, setResult] = useState('');
  const [token, setToken] = useState<{ token: string; webhook_url: string } | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const { data, error, reload } = useLoad(
    () =>
      Promise.all([
        api<Profile>('GET', '/api/v1/signals/profile'),
        api<Page<Signal>>('GET', `/api/v1/signals${query({ ticker, type, result, limit: 100 })}`),
      ]),
    [ticker, type, result],
  );
  useEvery(10_000, reload);
  const run = runner(setFailure, reload);
  const rotate = () => run(async () => setToken(await api('POST', '/api/v1/signals/profile/token', {})));
  const profile = data?.[0];
  return (
    <>
      <h1 tabIndex={-1}>{t('signals.title')}</h1>
      <ErrorBox error={failure || error} />
      {profile ? (
        <div class="kpis">
          <div class="kpi"><span class="muted">{t('signals.plan')}</span><strong>{profile.plan}</strong></div>
          <div class="kpi" id="signals-quota">
            <span class="muted">{t('signals.quota')}</span>
            <strong>{fmtNumber(profile.signals_used)} / {fmtNumber(profile.signals_quota)}</strong>
            <span class="muted">{t('signals.resets', { when: fmtDate(profile.quota_reset_at) })}</span>
          </div>
          <div class="kpi"><span class="muted">{t('signals.webhook')}</span><strong>{profile.has_token && profile.webhook_enabled ? t('signals.on') : t('signals.off')}</strong>
            <span class="muted">{t('signals.lastUsed', { when: fmtDate(profile.webhook_last_used) })}</span></div>
        </div>
      ) : null}
      {canWrite(me) ? (
        <p>
          <ConfirmButton id="rotate-token" question={t('signals.rotateConfirm')} onConfirm={rotate}>
            {profile?.has_token ? t('signals.rotate') : t('signals.createToken')}
          </ConfirmButton>
        </p>
      ) : null}
      {token ? (
        <ShownOnce id="signal-token" text={t('signals.tokenOnce')}>
          <p><code>{token.webhook_url}</code></p>
        </ShownOnce>
      ) : null}
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <Field label={t('signals.ticker')}><input type="text" value={ticker} onChange={(e) => setTicker(e.currentTarget.value)} /></Field>
        <Field label={t('signals.type')}><input type="text" value={type} placeholder="buy, sell…" onChange={(e) => setType(e.currentTarget.value)} /></Field>
        <Field label={t('signals.result')}>
          <select value={result} onChange={(e) => setResult(e.currentTarget.value)}>
            <option value="">{t('contacts.all')}</option>
            {['pending', 'win', 'loss', 'skip'].map((s) => <option value={s}>{t(`signals.results.${s}`)}</option>)}
          </select>
        </Field>
      </form>
      <Table id="signals" headers={[t('events.time'), t('signals.ticker'), t('signals.type'), t('signals.indicator'), t('signals.price'), t('signals.chart'), t('signals.result')]} empty={data ? t('signals.empty') : false}>
        {data?.[1].items.map((s) => (
          <tr data-signal={s.id}>
            <td>{fmtDate(s.timestamp)}</td>
            <td>{s.ticker ?? <span class="error" title={s.parse_error ?? ''}>{s.raw.slice(0, 40)}</span>}</td>
            <td>{s.signal_type ?? ''}</td>
            <td>{[s.indicator, s.timeframe].filter(Boolean).join(' · ')}</td>
            <td>{fmtNumber(s.price, 8)}</td>
            <td>{s.screenshot_url ? <a href={s.screenshot_url} target="_blank" rel="noopener">{t('signals.open')}</a> : t(`signals.shot.${s.screenshot_status}`, { defaultValue: s.screenshot_status })}</td>
            <td>
              <select aria-label={t('signals.result')} value={s.result} disabled={!canWrite(me)}
                onChange={(e) => { const r = e.currentTarget.value; run(() => api('PATCH', `/api/v1/signals/${s.id}`, { result: r })); }}>
                {['pending', 'win', 'loss', 'skip'].map((r) => <option value={r}>{t(`signals.results.${r}`)}</option>)}
              </select>
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}
