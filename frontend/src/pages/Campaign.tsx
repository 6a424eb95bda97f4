// One campaign: live counters and progress (server-sent events trigger a refresh; a slow poll
// covers a dropped stream), pause / resume / cancel / retry failed, and the per-recipient
// ledger with a status filter and a CSV export.
import { useEffect, useState } from 'preact/hooks';
import { all, api, query, type Page } from '../api';
import { fmtDate, t } from '../i18n';
import * as live from '../live';
import { canWrite, useMe } from '../session';
import { downloadCsv, ErrorBox, Kpi, Loading, runner, Table, useEvery, useLiveReload, useLoad } from '../ui';
import { progressText, type Campaign as CampaignT, type Counters } from './Campaigns';

type Recipient = { recipient: string; status: string; attempts: number; error_code: string | null; sent_at: string | null; delivered_at: string | null; read_at: string | null };
const COUNTERS: (keyof Counters)[] = ['total', 'pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped'];
// A sent message's receipts refine its status: delivered, then read.
const shown = (r: Recipient) => (r.status === 'sent' && r.read_at ? 'read' : r.status === 'sent' && r.delivered_at ? 'delivered' : r.status);

export function Campaign({ id }: { id: string }) {
  const me = useMe();
  const [filter, setFilter] = useState('');
  const [failure, setFailure] = useState<unknown>(null);
  const { data, error, reload } = useLoad(
    () =>
      Promise.all([
        api<CampaignT>('GET', `/api/v1/campaigns/${id}`),
        api<Page<Recipient>>('GET', `/api/v1/campaigns/${id}/recipients${query({ status: filter, limit: 100 })}`),
      ]),
    [id, filter],
  );
  const run = runner(setFailure, reload);
  const [liveState, setLiveState] = useState<live.LiveState>('closed');
  useEffect(() => live.watchState(setLiveState), []);
  useLiveReload('message.status', reload, (ev) => ev?.campaign_id === id, [id, filter]);
  const c = data?.[0];
  const finished = c ? ['completed', 'cancelled'].includes(c.status) : false;
  // Live events drive the page; the poll is the safety net (faster while the stream is down).
  // Receipts keep arriving after the last send, so a finished campaign is still refreshed.
  useEvery(liveState === 'open' ? (finished ? 10_000 : 3000) : 1000, reload);

  if (!data || !c) return error ? <ErrorBox error={error} /> : <Loading />;
  const ledger = data[1];
  const act = (action: string) => run(() => api('POST', `/api/v1/campaigns/${id}/${action}`, {}));
  const exportCsv = async () => {
    try {
      const rows = await all<Recipient>(`/api/v1/campaigns/${id}/recipients${query({ status: filter })}`);
      downloadCsv(`${c.name}.csv`, [
        ['recipient', 'status', 'attempts', 'error_code', 'sent_at', 'delivered_at', 'read_at'],
        ...rows.map((r) => [r.recipient, shown(r), r.attempts, r.error_code, r.sent_at, r.delivered_at, r.read_at]),
      ]);
    } catch (e) {
      setFailure(e);
    }
  };
  const buttons: [string, string][] = [];
  if (canWrite(me)) {
    if (c.status === 'draft') buttons.push(['start', t('campaigns.actions.start')]);
    if (['running', 'scheduled'].includes(c.status)) buttons.push(['pause', t('campaigns.actions.pause')]);
    if (c.status === 'paused') buttons.push(['resume', t('campaigns.actions.resume')]);
    if (!finished) buttons.push(['cancel', t('campaigns.actions.cancel')]);
    if (c.counters.failed > 0) buttons.push(['retry-failed', t('campaigns.actions.retryFailed')]);
  }
  return (
    <>
      <p><a href="#/campaigns">← {t('campaigns.title')}</a></p>
      <h1 tabIndex={-1}>{c.name}</h1>
      <p>
        {t('common.status')}: <strong id="campaign-status" data-status={c.status}>{t(`campaigns.status.${c.status}`, { defaultValue: c.status })}</strong>
        {c.status_detail ? ` (${c.status_detail})` : ''}
      </p>
      <div aria-live="polite" aria-atomic="true" class="progress-line">
        <progress id="progress" max={100} value={c.progress} aria-label={t('campaigns.progress')} />
        <span id="progress-text">{progressText(c)}</span>
      </div>
      <div class="kpis" id="counters">
        {COUNTERS.map((n) => <Kpi id={`count-${n}`} label={t(`campaigns.counters.${n}`)} value={c.counters[n]} />)}
      </div>
      <p class="muted">
        {t('campaigns.startedAt', { when: fmtDate(c.started_at) })}
        {c.finished_at ? ` · ${t('campaigns.finishedAt', { when: fmtDate(c.finished_at) })}` : ''}
      </p>
      <div id="actions">
        {buttons.map(([action, label]) => (
          <button type="button" data-action={action} onClick={() => act(action)}>{label}</button>
        ))}
      </div>
      <ErrorBox error={failure || error} />
      <h2>{t('campaigns.recipients')}</h2>
      <div class="filters">
        <label>
          {t('common.status')}
          <select value={filter} onChange={(e) => setFilter(e.currentTarget.value)}>
            <option value="">{t('contacts.all')}</option>
            {['pending', 'queued', 'sent', 'failed', 'skipped'].map((s) => <option value={s}>{t(`campaigns.counters.${s}`)}</option>)}
          </select>
        </label>
        <button type="button" id="export-csv" onClick={exportCsv}>{t('campaigns.exportCsv')}</button>
      </div>
      <Table
        id="recipients"
        headers={[t('campaigns.recipient'), t('common.status'), t('campaigns.attempts'), t('campaigns.error'), t('campaigns.counters.sent'), t('campaigns.counters.delivered'), t('campaigns.counters.read')]}
        empty={t('campaigns.noRecipients')}
      >
        {ledger.items.map((r) => (
          <tr data-status={shown(r)}>
            <td>{r.recipient}</td>
            <td>{t(`campaigns.counters.${shown(r)}`, { defaultValue: shown(r) })}</td>
            <td>{r.attempts}</td>
            <td>{r.error_code ?? ''}</td>
            <td>{fmtDate(r.sent_at)}</td>
            <td>{fmtDate(r.delivered_at)}</td>
            <td>{fmtDate(r.read_at)}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}
