// Contacts: server-side search, group and opt-out filters, pages, edit, delete; and the CSV
// import: drop or pick a file, check the column mapping against a preview of its first rows,
// then follow the import's progress and download the refused rows.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query, upload, type Page } from '../api';
import { delimiter, FIELDS, firstLineEnd, guessMapping, headerLine, mappingProblems, parseRows, type Target } from '../csv';
import { fmtDate, fmtNumber, t } from '../i18n';
import * as live from '../live';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, runner, Table, useEvery, useLoad } from '../ui';

export type Contact = {
  id: string; phone: string; name: string | null; noun: string | null; group: string | null;
  attributes: Record<string, string>; opted_out: boolean; opted_out_at: string | null; created_at: string;
};
type Import = { id: string; status: string; imported: number; failed: number; total_rows: number; errors_url: string; error: string | null };

const PAGE = 50;

export function Contacts() {
  const me = useMe();
  const [typed, setTyped] = useState('');
  const [search, setSearch] = useState('');
  // The list follows the search box a quarter second after the last keystroke.
  useEffect(() => {
    const id = setTimeout(() => {
      setSearch(typed.trim());
      setCursors([undefined]);
    }, 250);
    return () => clearTimeout(id);
  }, [typed]);
  const [group, setGroup] = useState('');
  const [optedOut, setOptedOut] = useState('');
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const [editing, setEditing] = useState<Contact | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const { data, error, reload } = useLoad(
    () => api<Page<Contact>>('GET', `/api/v1/contacts${query({ q: search, group, opted_out: optedOut, cursor, limit: PAGE })}`),
    [search, group, optedOut, cursor],
  );
  const run = runner(setFailure, reload);
  const filter = (set: (v: string) => void) => (ev: Event) => {
    set((ev.currentTarget as HTMLInputElement).value);
    setCursors([undefined]);
  };
  const remove = (c: Contact) => run(() => api('DELETE', `/api/v1/contacts/${c.id}`));

  return (
    <>
      <h1 tabIndex={-1}>{t('contacts.title')}</h1>
      {canWrite(me) ? <Importer onDone={reload} /> : null}
      <h2>{t('contacts.list')}</h2>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <Field label={t('contacts.search')}>
          <input id="contact-search" type="search" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} maxLength={100} />
        </Field>
        <Field label={t('contacts.group')}>
          <input id="contact-group" type="text" value={group} onChange={filter(setGroup)} />
        </Field>
        <Field label={t('contacts.optOut')}>
          <select value={optedOut} onChange={filter(setOptedOut)}>
            <option value="">{t('contacts.all')}</option>
            <option value="false">{t('contacts.subscribed')}</option>
            <option value="true">{t('contacts.optedOut')}</option>
          </select>
        </Field>
      </form>
      <ErrorBox error={failure || error} />
      {editing ? <Editor contact={editing} onClose={() => { setEditing(null); reload(); }} /> : null}
      <Table
        id="contacts"
        headers={[t('contacts.name'), t('contacts.noun'), t('contacts.phone'), t('contacts.group'), t('contacts.optOut'), t('common.created'), '']}
        empty={data ? t('contacts.empty') : false}
      >
        {data?.items.map((c) => (
          <tr data-contact={c.id}>
            <td>{c.name ?? ''}</td>
            <td>{c.noun ?? ''}</td>
            <td>{c.phone}</td>
            <td>{c.group ?? ''}</td>
            <td>{c.opted_out ? t('contacts.optedOutAt', { when: fmtDate(c.opted_out_at) }) : ''}</td>
            <td>{fmtDate(c.created_at)}</td>
            <td class="actions">
              {canWrite(me) ? (
                <>
                  <button type="button" onClick={() => setEditing(c)}>{t('common.edit')}</button>
                  <ConfirmButton question={t('contacts.deleteConfirm', { phone: c.phone })} onConfirm={() => remove(c)}>
                    {t('common.delete')}
                  </ConfirmButton>
                </>
              ) : null}
            </td>
          </tr>
        ))}
      </Table>
      <nav class="pager" aria-label={t('common.pages')}>
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>{t('common.previous')}</button>
        <span>{t('common.pageN', { n: cursors.length })}</span>
        <button type="button" disabled={!data?.next_cursor} onClick={() => setCursors([...cursors, data!.next_cursor!])}>{t('common.next')}</button>
      </nav>
    </>
  );
}

function Editor({ contact, onClose }: { contact: Contact; onClose: () => void }) {
  const [failure, setFailure] = useState<unknown>(null);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);
  const save = async (ev: Event) => {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget as HTMLFormElement);
    const body: Record<string, unknown> = {
      name: f.get('name') || null, noun: f.get('noun') || null, group: f.get('group') || null, phone: f.get('phone'),
    };
    if (f.get('opted_out') && !contact.opted_out) body.opted_out = true;
    try {
      await api('PATCH', `/api/v1/contacts/${contact.id}`, body);
      onClose();
    } catch (e) {
      setFailure(e);
    }
  };
  return (
    <form id="edit-contact" class="card" onSubmit={save} aria-label={t('contacts.editTitle')}>
      <Field label={t('contacts.name')}><input ref={first} name="name" type="text" value={contact.name ?? ''} maxLength={200} /></Field>
      <Field label={t('contacts.noun')}><input name="noun" type="text" value={contact.noun ?? ''} maxLength={200} /></Field>
      <Field label={t('contacts.phone')}><input name="phone" type="tel" value={contact.phone} required /></Field>
      <Field label={t('contacts.group')}><input name="group" type="text" value={contact.group ?? ''} maxLength={200} /></Field>
      <label class="check">
        <input name="opted_out" type="checkbox" checked={contact.opted_out} disabled={contact.opted_out} />
        {t('contacts.optedOut')}
      </label>
      <button type="submit">{t('common.save')}</button>
      <button type="button" onClick={onClose}>{t('common.cancel')}</button>
      <ErrorBox error={failure} />
    </form>
  );
}

type Preview = { file: File; sep: string; headers: string[]; rows: string[][]; mapping: Target[]; headerBytes: number };

async function readPreview(file: File): Promise<Preview> {
  const head = new Uint8Array(await file.slice(0, 64 * 1024).arrayBuffer());
  const headerBytes = firstLineEnd(head);
  // UTF-8, else Windows-1252 (what Excel saves on Spanish Windows), as the server reads it.
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(head);
  } catch {
    text = new TextDecoder('windows-1252').decode(head);
  }
  text = text.replace(/^\uFEFF/, '');
  const sep = delimiter(text.split('\n')[0]);
  const [headers = [], ...rows] = parseRows(text, sep, 6);
  return { file, sep, headers, rows: rows.slice(0, 5), mapping: guessMapping(headers), headerBytes };
}

function Importer({ onDone }: { onDone: () => void }) {
  const [preview, setPreview] = useState<Preview | null>(null);
  const [imp, setImp] = useState<Import | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const [over, setOver] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  // The server announces the counts live (`import.progress`); the poll covers a dropped stream.
  const show = (next: Import) => {
    setImp(next);
    if (next.status !== 'running') onDone();
  };
  const running = imp?.status === 'running' ? imp.id : null;
  useEffect(() => {
    if (!running) return;
    return live.on('import.progress', (next: Import) => next.id === running && show(next));
  }, [running]);
  useEvery(running ? 2000 : null, async () => {
    try {
      show(await api<Import>('GET', `/api/v1/contacts/imports/${running}`));
    } catch (e) {
      setFailure(e);
    }
  });

  const choose = async (file: File | undefined) => {
    setImp(null);
    setFailure(null);
    setPreview(file ? await readPreview(file) : null);
  };
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const file = fileInput.current?.files?.[0] ?? preview?.file;
    if (!file) return;
    const p = preview?.file === file ? preview : await readPreview(file);
    const problems = mappingProblems(p.mapping);
    if (problems.length) return setFailure(new Error(problems.map((k) => t(k)).join(' ')));
    // Only the header line changes: the rest of the file goes as it is.
    const header = new TextEncoder().encode(headerLine(p.mapping, p.sep) + '\n');
    const body = new Blob([header, file.slice(p.headerBytes)], { type: 'text/csv' });
    const region = (form.current!.elements.namedItem('region') as HTMLInputElement).value || 'ES';
    try {
      setImp(await upload<Import>(`/api/v1/contacts/imports${query({ filename: file.name, default_region: region })}`, body, 'text/csv'));
      setFailure(null);
    } catch (e) {
      setFailure(e);
    }
  };
  const setTarget = (i: number, target: Target) => preview && setPreview({ ...preview, mapping: preview.mapping.map((m, j) => (j === i ? target : m)) });

  return (
    <section>
      <h2>{t('contacts.import')}</h2>
      <form id="import" ref={form} onSubmit={submit}>
        <div
          class={`drop${over ? ' over' : ''}`}
          onDragOver={(e) => { e.preventDefault(); setOver(true); }}
          onDragLeave={() => setOver(false)}
          onDrop={(e) => {
            e.preventDefault();
            setOver(false);
            const file = e.dataTransfer?.files[0];
            if (file && fileInput.current) {
              const dt = new DataTransfer();
              dt.items.add(file);
              fileInput.current.files = dt.files;
            }
            choose(file);
          }}
        >
          <Field label={t('contacts.file')}>
            <input ref={fileInput} type="file" name="file" accept=".csv,text/csv" required onChange={(e) => choose(e.currentTarget.files?.[0])} />
          </Field>
          <span class="muted">{t('contacts.dropHere')}</span>
        </div>
        <Field label={t('contacts.region')}>
          <input type="text" name="region" class="narrow" value="ES" maxLength={2} />
        </Field>
        <button type="submit">{t('contacts.importButton')}</button>
      </form>
      {preview ? (
        <div id="mapping">
          <h3>{t('contacts.mapping.title')}</h3>
          <p class="muted">{t('contacts.mapping.help')}</p>
          <div class="table-wrap" tabIndex={0}>
            <table>
              <thead>
                <tr>
                  {preview.headers.map((h, i) => (
                    <th scope="col">
                      <label>
                        {h || `#${i + 1}`}
                        <select name={`map-${i}`} value={preview.mapping[i]} onChange={(e) => setTarget(i, e.currentTarget.value as Target)}>
                          {FIELDS.map((f) => <option value={f}>{t(`contacts.fields.${f}`)}</option>)}
                          <option value={`attr:${h.trim().toLowerCase() || `col${i + 1}`}`}>{t('contacts.fields.attribute')}</option>
                          <option value="skip">{t('contacts.fields.skip')}</option>
                        </select>
                      </label>
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {preview.rows.map((r) => (
                  <tr>{preview.headers.map((_, i) => <td>{r[i] ?? ''}</td>)}</tr>
                ))}
              </tbody>
            </table>
          </div>
          {mappingProblems(preview.mapping).map((k) => <p class="error">{t(k)}</p>)}
        </div>
      ) : null}
      <div id="import-progress" aria-live="polite">
        {imp ? (
          <p data-status={imp.status}>
            {t(`contacts.importStatus.${imp.status}`, { defaultValue: imp.status })}:{' '}
            {t('contacts.importCounts', { imported: imp.imported, failed: imp.failed })}
            {imp.total_rows ? ` ${t('contacts.ofRows', { total: fmtNumber(imp.total_rows) })}` : ''}{' '}
            {imp.status === 'running' && imp.total_rows ? (
              <progress max={imp.total_rows} value={imp.imported + imp.failed} aria-label={t('contacts.import')} />
            ) : null}
            {imp.failed > 0 && imp.status !== 'running' ? (
              <a href={imp.errors_url} id="import-errors" download="errors.csv">{t('contacts.refusedRows')}</a>
            ) : null}
            {imp.error ? <span class="error"> {imp.error}</span> : null}
          </p>
        ) : null}
      </div>
      <ErrorBox error={failure} />
    </section>
  );
}
