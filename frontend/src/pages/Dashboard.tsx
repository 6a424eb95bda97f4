// The seed's dashboard: this month's KPIs, the timeline, sends by group, the top 10 contacts,
// and "Limpiar caché" (rebuild the rollups from the ledger). Refreshed every 10 s and at once
// when a message changes status (live updates).
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ChartView } from '../charts';
import { fmtDay, fmtNumber, fmtPercent, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Kpi, Loading, Table, useEvery, useLiveReload, useLoad } from '../ui';

type Month = { month: string; sent: number; errors: number; total: number; success_rate: number; daily_average: number };
type Counts = { sent: number; errors: number };

export function Dashboard() {
  const me = useMe();
  const [days, setDays] = useState(14);
  const [note, setNote] = useState<string | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const { data, error, reload } = useLoad(
    () =>
      Promise.all([
        api<Month>('GET', '/api/v1/dashboard/current-month'),
        api<{ groups: ({ group: string | null } & Counts)[] }>('GET', '/api/v1/dashboard/by-group'),
        api<{ days: ({ date: string } & Counts)[] }>('GET', `/api/v1/dashboard/timeline?days=${days}`),
        api<{ contacts: ({ contact_id: string; name: string | null; phone: string | null; group: string | null } & Counts)[] }>(
          'GET', '/api/v1/dashboard/by-contact?limit=10'),
      ]),
    [days],
  );
  useEvery(10_000, reload);
  useLiveReload('message.status', reload, undefined, [days], 1000);

  const rebuild = async () => {
    try {
      await api('DELETE', '/cache/user');
      setNote(t('dashboard.rebuilt'));
      setFailure(null);
      await reload();
    } catch (e) {
      setFailure(e);
    }
  };

  if (!data) return error ? <ErrorBox error={error} /> : <Loading />;
  const [month, groups, timeline, top] = data;
  return (
    <>
      <h1 tabIndex={-1}>{t('dashboard.title', { month: month.month })}</h1>
      <div class="kpis">
        <Kpi id="kpi-sent" label={t('dashboard.sent')} value={fmtNumber(month.sent)} />
        <Kpi id="kpi-errors" label={t('dashboard.errors')} value={fmtNumber(month.errors)} />
        <Kpi id="kpi-rate" label={t('dashboard.successRate')} value={fmtPercent(month.success_rate)} />
        <Kpi id="kpi-average" label={t('dashboard.dailyAverage')} value={fmtNumber(month.daily_average, 1)} />
      </div>
      <ErrorBox error={error || failure} />
      {note ? <p role="status">{note}</p> : null}
      <div class="grid2">
        <section>
          <h2>
            {t('dashboard.timeline')}{' '}
            <select aria-label={t('dashboard.range')} value={days} onChange={(e) => setDays(Number(e.currentTarget.value))}>
              {[7, 14, 30, 90].map((d) => (
                <option value={d}>{t('dashboard.lastDays', { count: d })}</option>
              ))}
            </select>
          </h2>
          <ChartView
            id="chart-timeline"
            type="line"
            label={t('dashboard.timelineLabel', { count: days })}
            labels={timeline.days.map((d) => fmtDay(d.date))}
            series={[
              { label: t('dashboard.sent'), data: timeline.days.map((d) => d.sent) },
              { label: t('dashboard.errors'), data: timeline.days.map((d) => d.errors) },
            ]}
          />
        </section>
        <section>
          <h2>{t('dashboard.byGroup')}</h2>
          {groups.groups.length ? (
            <ChartView
              id="chart-groups"
              type="doughnut"
              label={t('dashboard.byGroupLabel')}
              labels={groups.groups.map((g) => g.group ?? t('dashboard.noGroup'))}
              series={[{ label: t('dashboard.sent'), data: groups.groups.map((g) => g.sent) }]}
            />
          ) : (
            <p class="empty muted">{t('dashboard.nothingYet')}</p>
          )}
        </section>
      </div>
      <h2>{t('dashboard.byGroup')}</h2>
      <Table id="by-group" headers={[t('contacts.group'), t('dashboard.sent'), t('dashboard.errors')]} empty={false}>
        {groups.groups.map((g) => (
          <tr>
            <td>{g.group ?? t('dashboard.noGroup')}</td>
            <td>{fmtNumber(g.sent)}</td>
            <td>{fmtNumber(g.errors)}</td>
          </tr>
        ))}
      </Table>
      <h2>{t('dashboard.top')}</h2>
      <Table id="top-contacts" headers={[t('contacts.name'), t('contacts.phone'), t('contacts.group'), t('dashboard.sent'), t('dashboard.errors')]} empty={t('dashboard.nothingYet')}>
        {top.contacts.map((c) => (
          <tr>
            <td>{c.name ?? ''}</td>
            <td>{c.phone ?? ''}</td>
            <td>{c.group ?? ''}</td>
            <td>{fmtNumber(c.sent)}</td>
            <td>{fmtNumber(c.errors)}</td>
          </tr>
        ))}
      </Table>
      <details>
        <summary>{t('dashboard.showData')}</summary>
        <Table id="timeline" headers={[t('common.day'), t('dashboard.sent'), t('dashboard.errors')]} empty={false}>
          {timeline.days.map((d) => (
            <tr>
              <td>{d.date}</td>
              <td>{d.sent}</td>
              <td>{d.errors}</td>
            </tr>
          ))}
        </Table>
      </details>
      {canWrite(me) ? (
        <p>
          <ConfirmButton id="clear-cache" question={t('dashboard.clearCacheConfirm')} onConfirm={rebuild}>
            {t('dashboard.clearCache')}
          </ConfirmButton>
        </p>
      ) : null}
    </>
  );
}
