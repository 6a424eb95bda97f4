// The media library: upload an image or document (the channel's limits are checked by the
// server), see what is stored, open or delete it.
import { useState } from 'preact/hooks';
import { api, query, upload, type Page } from '../api';
import { fmtBytes, fmtDate, t } from '../i18n';
import { canWrite, useMe } from '../session';
import { ConfirmButton, ErrorBox, Field, runner, Table, useLoad } from '../ui';

type Media = { id: string; filename: string | null; content_type: string; size: number; created_at: string };

export function MediaPage() {
  const me = useMe();
  const { data, error, reload } = useLoad(() => api<Page<Media>>('GET', '/api/v1/media?limit=200'));
  const [failure, setFailure] = useState<unknown>(null);
  const run = runner(setFailure, reload);
  const [busy, setBusy] = useState(false);
  const send = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const f = form.elements as any;
    const file: File | undefined = f.file.files[0];
    if (!file) return;
    setBusy(true);
    try {
      await upload(`/api/v1/media${query({ channel: f.channel.value, filename: file.name })}`, file);
      setFailure(null);
      form.reset();
      await reload();
    } catch (e) {
      setFailure(e);
    } finally {
      setBusy(false);
    }
  };
  const remove = (m: Media) => run(() => api('DELETE', `/api/v1/media/${m.id}`));
  return (
    <>
      <h1 tabIndex={-1}>{t('media.title')}</h1>
      {canWrite(me) ? (
        <form id="upload-media" onSubmit={send}>
          <Field label={t('media.file')}><input type="file" name="file" required accept="image/jpeg,image/png,application/pdf,video/mp4" /></Field>
          <Field label={t('media.for')}>
            <select name="channel"><option value="whatsapp">WhatsApp</option><option value="telegram">Telegram</option></select>
          </Field>
          <button type="submit" disabled={busy} aria-busy={busy}>{t('media.upload')}</button>
        </form>
      ) : null}
      <ErrorBox error={failure || error} />
      <Table id="media" headers={[t('media.filename'), t('media.type'), t('media.size'), t('common.created'), '']} empty={data ? t('media.empty') : false}>
        {data?.items.map((m) => (
          <tr data-media={m.id}>
            <td><a href={`/api/v1/media/${m.id}/content`} target="_blank" rel="noopener">{m.filename ?? m.id}</a></td>
            <td>{m.content_type}</td>
            <td>{fmtBytes(m.size)}</td>
            <td>{fmtDate(m.created_at)}</td>
            <td>{canWrite(me) ? <ConfirmButton question={t('media.deleteConfirm', { name: m.filename ?? m.id })} onConfirm={() => remove(m)}>{t('common.delete')}</ConfirmButton> : null}</td>
          </tr>
        ))}
      </Table>
    </>
  );
}
