// API keys: list, create with scopes and expiry (the key shown once), revoke.
import { useState } from 'preact/hooks';
import { api, type Page } from '../api';
import { fmtDate, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, runner, ShownOnce, Table, useLoad } from '../ui';

type Key = { id: string; name: string; prefix: string; scopes: string[]; created_at: string; expires_at: string | null; last_used_at: string | null; revoked_at: string | null };

export function Keys() {
  const me = useMe();
  const { data, error, reload } = useLoad(() => api<Page<Key>>('GET', '/api/v1/api-keys'));
  const [token, setToken] = useState<string | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  const create = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const f = new FormData(form);
    const body: Record<string, unknown> = { name: f.get('name'), scopes: ['read', 'write'].filter((s) => f.get(s)) };
    if (f.get('days')) body.expires_in_days = Number(f.get('days'));
    try {
      const key = await api<{ token: string }>('POST', '/api/v1/api-keys', body);
      setToken(key.token);
      setFailure(null);
      form.reset();
      await reload();
    } catch (e) {
      setFailure(e);
    }
  };
  const revoke = (id: string) => run(() => api('DELETE', `/api/v1/api-keys/${id}`));
  return (
    <>
      <h1 tabIndex={-1}>{t('keys.title')}</h1>
      <p class="muted">{t('keys.help')}</p>
      {canWrite(me) ? (
        <form id="new-key" onSubmit={create}>
          <label>
            {t('common.name')}
            <input type="text" name="name" required maxLength={100} />
          </label>
          <label class="check">
            <input type="checkbox" name="read" checked />
            {t('keys.read')}
          </label>
          <label class="check">
            <input type="checkbox" name="write" checked />
            {t('keys.write')}
          </label>
          <label>
            {t('keys.expiresInDays')}
            <input type="number" name="days" min={1} max={3650} />
          </label>
          <button type="submit">{t('keys.create')}</button>
        </form>
      ) : (
        <p class="muted">{t('keys.viewerNote')}</p>
      )}
      {token ? (
        <ShownOnce id="new-token" text={t('keys.copyNow')}>
          <code>{token}</code>
        </ShownOnce>
      ) : null}
      <ErrorBox error={failure || error} />
      <Table
        id="keys"
        headers={[t('common.name'), t('keys.key'), t('keys.scopes'), t('common.created'), t('keys.expires'), t('keys.lastUsed'), t('common.status'), '']}
        empty={data ? t('keys.empty') : false}
      >
        {data?.items.map((k) => (
          <tr data-key={k.id}>
            <td>{k.name}</td>
            <td>
              <code>{k.prefix}…</code>
            </td>
            <td>{k.scopes.join(' ')}</td>
            <td>{fmtDate(k.created_at)}</td>
            <td>{fmtDate(k.expires_at)}</td>
            <td>{fmtDate(k.last_used_at)}</td>
            <td>{k.revoked_at ? t('keys.revokedAt', { when: fmtDate(k.revoked_at) }) : t('keys.active')}</td>
            <td>
              {k.revoked_at || !canWrite(me) ? null : (
                <ConfirmButton question={t('keys.revokeConfirm', { name: k.name })} onConfirm={() => revoke(k.id)}>
                  {t('keys.revoke')}
                </ConfirmButton>
              )}
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}
