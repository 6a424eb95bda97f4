// Pregonero's dashboard: the shell (navigation, language, live state, who is signed in) and the
// hash router. Every page lives in ./pages; strings come from ./locales through i18n.
import './app.css';
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, setCsrf, UNAUTHORIZED, type Me } from './api';
import { languages, lang, setLanguage, t, type Language } from './i18n';
import * as live from './live';
import { Audit } from './pages/Audit';
import { Campaign } from './pages/Campaign';
import { Campaigns } from './pages/Campaigns';
import { Channels } from './pages/Channels';
import { Contacts } from './pages/Contacts';
import { Dashboard } from './pages/Dashboard';
import { Events } from './pages/Events';
import { Integrations } from './pages/Integrations';
import { Keys } from './pages/Keys';
import { Login } from './pages/Login';
import { MediaPage } from './pages/Media';
import { Messages } from './pages/Messages';
import { Signals } from './pages/Signals';
import { Templates } from './pages/Templates';
import { parseRoute, type Route } from './routes';
import { Session } from './session';
import { ErrorBox, Loading } from './ui';

const NAV: [string, string][] = [
  ['dashboard', 'nav.dashboard'], ['messages', 'nav.messages'], ['campaigns', 'nav.campaigns'], ['contacts', 'nav.contacts'],
  ['templates', 'nav.templates'], ['channels', 'nav.channels'], ['integrations', 'nav.integrations'], ['events', 'nav.events'],
  ['media', 'nav.media'], ['signals', 'nav.signals'], ['api-keys', 'nav.apiKeys'],
];

function Page({ route, me }: { route: Route; me: Me }) {
  switch (route.page) {
    case 'messages': return <Messages />;
    case 'campaigns': return route.id ? <Campaign id={route.id} /> : <Campaigns />;
    case 'contacts': return <Contacts />;
    case 'templates': return <Templates />;
    case 'channels': return <Channels />;
    case 'integrations': return <Integrations />;
    case 'events': return <Events />;
    case 'media': return <MediaPage />;
    case 'signals': return <Signals />;
    case 'api-keys': return <Keys />;
    case 'audit-log': return me.role === 'admin' ? <Audit /> : <Dashboard />;
    default: return <Dashboard />;
  }
}

function LiveBadge() {
  const [state, setState] = useState<live.LiveState>('closed');
  useEffect(() => live.watchState(setState), []);
  if (state === 'open' || state === 'closed') return null;
  return <span id="live-state" class={`live ${state}`} role="status">{t(`live.${state}`)}</span>;
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [failure, setFailure] = useState<unknown>(null);
  const [route, setRoute] = useState<Route>(parseRoute(location.hash));
  const [, setLang] = useState<Language>(lang());
  const [menuOpen, setMenuOpen] = useState(false);
  const main = useRef<HTMLElement>(null);

  const start = async () => {
    try {
      const who = await api<Me>('GET', '/auth/me');
      setCsrf(who.csrf_token);
      setMe(who);
      live.connect();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setMe(null);
      else setFailure(e);
    }
  };
  useEffect(() => {
    start();
    const onHash = () => {
      setRoute(parseRoute(location.hash));
      setMenuOpen(false);
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  // Focus moves to the new page's heading (once its data has come and it is drawn), so
  // keyboard and screen-reader users land on it.
  useEffect(() => {
    let tries = 0;
    const id = setInterval(() => {
      const h1 = main.current?.querySelector<HTMLElement>('h1');
      if (h1) h1.focus();
      if (h1 || ++tries > 100) clearInterval(id);
    }, 50);
    return () => clearInterval(id);
  }, [route.page, route.id]);
  // Any call answered 401 (the session expired or was revoked) shows the sign-in form.
  useEffect(() => {
    const ended = () => {
      live.disconnect();
      setCsrf(undefined);
      setMe(null);
    };
    window.addEventListener(UNAUTHORIZED, ended);
    return () => window.removeEventListener(UNAUTHORIZED, ended);
  }, []);

  const logout = async () => {
    const { logout_url } = await api<{ logout_url?: string }>('POST', '/auth/logout', {});
    live.disconnect();
    setCsrf(undefined);
    if (logout_url) location.assign(logout_url);
    else setMe(null);
  };
  const switchLanguage = (l: Language) => {
    setLanguage(l);
    setLang(l);
  };

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); main.current?.focus(); }}>{t('nav.skip')}</a>
      <header>
        <strong class="brand">Pregonero</strong>
        {me ? (
          <button type="button" class="menu" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>
            {t('nav.menu')}
          </button>
        ) : null}
        <nav id="nav" hidden={!me} class={menuOpen ? 'open' : undefined} aria-label={t('nav.label')}>
          {NAV.map(([page, key]) => (
            <a href={`#/${page}`} aria-current={route.page === page ? 'page' : undefined}>{t(key)}</a>
          ))}
          <a href="#/audit-log" id="nav-audit" hidden={me?.role !== 'admin'} aria-current={route.page === 'audit-log' ? 'page' : undefined}>{t('nav.audit')}</a>
        </nav>
        <LiveBadge />
        <span id="who">{me ? `${me.name} (${t(`roles.${me.role}`, { defaultValue: me.role })})` : ''}</span>
        <label class="lang">
          <span class="sr-only">{t('nav.language')}</span>
          <select id="language" value={lang()} onChange={(e) => switchLanguage(e.currentTarget.value as Language)}>
            {languages.map((l) => <option value={l}>{l === 'es' ? 'Español' : 'English'}</option>)}
          </select>
        </label>
        <button id="logout" type="button" hidden={!me} onClick={logout}>{t('nav.signOut')}</button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {failure ? (
          <ErrorBox error={failure} />
        ) : me === undefined ? (
          <Loading />
        ) : me === null ? (
          <Login onSignedIn={start} />
        ) : (
          <Session.Provider value={me}>
            <Page key={`${route.page}/${route.id ?? ''}/${lang()}`} route={route} me={me} />
          </Session.Provider>
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
