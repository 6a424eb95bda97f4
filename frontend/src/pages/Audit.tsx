// The audit log (admins): who did what, from where.
import { api, type Page } from '../api';
import { fmtDate, t } from '../i18n';
import { ErrorBox, Loading, Table, useLoad } from '../ui';

type Entry = { id: string; at: string; actor_id: string | null; actor_kind: string; action: string; target: unknown; status: number; ip: string | null; request_id: string | null };

export function Audit() {
  const { data, error } = useLoad(() => api<Page<Entry>>('GET', '/api/v1/audit-log?limit=200'));
  if (!data) return error ? <ErrorBox error={error} /> : <Loading />;
  return (
    <>
      <h1 tabIndex={-1}>{t('audit.title')}</h1>
      <Table
        id="audit"
        headers={[t('audit.when'), t('audit.who'), t('audit.how'), t('audit.action'), t('audit.target'), t('common.status'), t('audit.from'), t('audit.request')]}
        empty={t('audit.empty')}
      >
        {data.items.map((e) => (
          <tr>
            <td>{fmtDate(e.at)}</td>
            <td>{e.actor_id ?? '—'}</td>
            <td>{e.actor_kind}</td>
            <td>{e.action}</td>
            <td>{e.target ? JSON.stringify(e.target) : ''}</td>
            <td>{e.status}</td>
            <td>{e.ip ?? ''}</td>
            <td>
              <code>{e.request_id ?? ''}</code>
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}
