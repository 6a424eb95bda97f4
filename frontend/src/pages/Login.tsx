// Sign in: through Keycloak (a redirect) or, without it, the local admin's password.
import { useState } from 'preact/hooks';
import { api } from '../api';
import { t } from '../i18n';
import { ErrorBox, Loading, useLoad } from '../ui';

export function Login({ onSignedIn }: { onSignedIn: () => void }) {
  const { data: config, error } = useLoad(() => api<{ mode: string }>('GET', '/auth/config'));
  const [failure, setFailure] = useState<unknown>(null);
  if (!config) return error ? <ErrorBox error={error} /> : <Loading />;
  if (config.mode === 'oidc') {
    const back = encodeURIComponent(location.pathname + location.hash);
    return (
      <>
        <h1 tabIndex={-1}>{t('login.title')}</h1>
        <a href={`/auth/login?return_to=${back}`} id="sso" class="button">
          {t('login.withKeycloak')}
        </a>
      </>
    );
  }
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget as HTMLFormElement);
    try {
      await api('POST', '/auth/login', { username: f.get('username'), password: f.get('password') });
      onSignedIn();
    } catch (e) {
      setFailure(e);
    }
  };
  return (
    <>
      <h1 tabIndex={-1}>{t('login.title')}</h1>
      <form id="login" onSubmit={submit}>
        <label>
          {t('login.user')}
          <input type="text" name="username" value="admin" autocomplete="username" required />
        </label>
        <label>
          {t('login.password')}
          <input type="password" name="password" autocomplete="current-password" required />
        </label>
        <button type="submit">{t('login.submit')}</button>
      </form>
      <ErrorBox error={failure} />
    </>
  );
}
