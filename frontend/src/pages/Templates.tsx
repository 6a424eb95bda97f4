// Templates: text with `{{ nombre }}`-style variables (a picker inserts them at the caret) and
// an optional image or document; a live preview of the draft for a chosen contact, and the
// server's exact preview of a saved template.
import { useRef, useState } from 'preact/hooks';
import { api, query, upload, type Page } from '../api';
import { t } from '../i18n';
import { canWrite, useMe } from '../session';
import { contactVars, insertVariable, renderDraft } from '../template';
import { ConfirmButton, ErrorBox, Field, runner, Table, useLoad } from '../ui';
import type { Contact } from './Contacts';

type Template = { id: string; name: string; body: string; variables: string[]; media_id: string | null };
const BASE_VARIABLES = ['nombre', 'sustantivo', 'grupo', 'telefono'];

export function Templates() {
  const me = useMe();
  const { data, error, reload } = useLoad(() =>
    Promise.all([api<Page<Template>>('GET', '/api/v1/templates'), api<Page<Contact>>('GET', '/api/v1/contacts?limit=50')]),
  );
  const [body, setBody] = useState('');
  const [contactId, setContactId] = useState('');
  const [preview, setPreview] = useState<{ who: string; text: string } | null>(null);
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  const area = useRef<HTMLTextAreaElement>(null);
  const [templates, contacts] = data ? [data[0].items, data[1].items] : [[], []];
  const contact = contacts.find((c) => c.id === contactId) ?? contacts[0];
  const attributes = [...new Set(contacts.flatMap((c) => Object.keys(c.attributes ?? {})))].filter((a) => !BASE_VARIABLES.includes(a));

  const pick = (name: string) => {
    const el = area.current!;
    const next = insertVariable(body, el.selectionStart, el.selectionEnd, name);
    setBody(next.body);
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(next.caret, next.caret);
    });
  };
  const save = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const f = form.elements as any;
    try {
      const payload: Record<string, unknown> = { name: f.name.value, body };
      const file: File | undefined = f.media.files[0];
      if (file) payload.media_id = (await upload<{ id: string }>(`/api/v1/media${query({ channel: 'whatsapp', filename: file.name })}`, file)).id;
      await api('POST', '/api/v1/templates', payload);
      setFailure(null);
      form.reset();
      setBody('');
      await reload();
    } catch (e) {
      setFailure(e);
    }
  };
  const serverPreview = async (tpl: Template) => {
    if (!contact) return;
    try {
      const r = await api<{ text: string }>('POST', `/api/v1/templates/${tpl.id}/preview`, { contact_id: contact.id });
      setPreview({ who: contact.name ?? contact.phone, text: r.text });
      setFailure(null);
    } catch (e) {
      setPreview(null);
      setFailure(e);
    }
  };
  const remove = (tpl: Template) => run(() => api('DELETE', `/api/v1/templates/${tpl.id}`));
  const draft = contact ? renderDraft(body, contactVars(contact)) : null;

  return (
    <>
      <h1 tabIndex={-1}>{t('templates.title')}</h1>
      {contacts.length ? (
        <Field label={t('templates.previewFor')}>
          <select id="preview-contact" value={contact?.id} onChange={(e) => setContactId(e.currentTarget.value)}>
            {contacts.map((c) => <option value={c.id}>{c.name ? `${c.name} (${c.phone})` : c.phone}</option>)}
          </select>
        </Field>
      ) : (
        <p class="muted">{t('templates.noContacts')}</p>
      )}
      {canWrite(me) ? (
        <form id="new-template" onSubmit={save}>
          <Field label={t('common.name')}><input type="text" name="name" required maxLength={100} /></Field>
          <div class="wide">
            <div class="picker" role="group" aria-label={t('templates.insertVariable')}>
              <span class="muted">{t('templates.insertVariable')}:</span>
              {[...BASE_VARIABLES, ...attributes].map((v) => (
                <button type="button" class="chip" onClick={() => pick(v)}>{`{{ ${v} }}`}</button>
              ))}
            </div>
            <Field label={t('templates.text')} wide>
              <textarea ref={area} name="body" rows={4} required maxLength={4096} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
            </Field>
          </div>
          <Field label={t('templates.media')}>
            <input type="file" name="media" accept="image/jpeg,image/png,application/pdf,video/mp4" />
          </Field>
          <button type="submit">{t('templates.save')}</button>
        </form>
      ) : null}
      {draft && body ? (
        <div class="bubble" id="draft-preview" aria-live="polite">
          <span class="muted">{t('templates.draftPreview')}</span>
          <p>{draft.text}</p>
          {draft.missing.length ? <p class="error">{t('templates.missing', { names: draft.missing.join(', ') })}</p> : null}
        </div>
      ) : null}
      <ErrorBox error={failure || error} />
      <div id="preview" aria-live="polite">
        {preview ? (
          <p>
            {t('templates.previewOf', { who: preview.who })} <q>{preview.text}</q>
          </p>
        ) : null}
      </div>
      <Table id="templates" headers={[t('common.name'), t('templates.text'), t('templates.variables'), t('media.title'), '']} empty={data ? t('templates.empty') : false}>
        {templates.map((tpl) => (
          <tr data-template={tpl.id}>
            <td>{tpl.name}</td>
            <td class="text">{tpl.body}</td>
            <td>{(tpl.variables ?? []).join(', ')}</td>
            <td>{tpl.media_id ? <a href={`/api/v1/media/${tpl.media_id}/content`} target="_blank" rel="noopener">{t('templates.mediaLink')}</a> : ''}</td>
            <td class="actions">
              {contact ? <button type="button" class="preview" onClick={() => serverPreview(tpl)}>{t('templates.preview')}</button> : null}
              {canWrite(me) ? (
                <ConfirmButton question={t('templates.deleteConfirm', { name: tpl.name })} onConfirm={() => remove(tpl)}>{t('common.delete')}</ConfirmButton>
              ) : null}
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}
