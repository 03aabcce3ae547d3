// The login form: an admin token, or a name and the password set by `ldguard token passwd`.
import { api, ApiError, type SessionInfo } from './api.js';
import { h, replace } from './dom.js';

export function loginView(root: HTMLElement, onLogin: (s: SessionInfo) => void): void {
  let mode: 'token' | 'password' = 'token';
  const error = h('p', { class: 'login-error', role: 'alert', 'aria-live': 'polite' });
  const fields = h('div', { class: 'login-fields' });
  const submit = h('button', { type: 'submit', class: 'btn primary wide' }, 'Log in');
  const tabs = h('div', { class: 'segmented', role: 'tablist' });

  const render = () => {
    replace(
      tabs,
      h('button', { type: 'button', role: 'tab', class: mode === 'token' ? 'active' : null, 'aria-selected': String(mode === 'token'), onclick: () => ((mode = 'token'), render()) }, 'Admin token'),
      h('button', { type: 'button', role: 'tab', class: mode === 'password' ? 'active' : null, 'aria-selected': String(mode === 'password'), onclick: () => ((mode = 'password'), render()) }, 'Password'),
    );
    replace(
      fields,
      mode === 'token'
        ? h('label', null, 'Admin token', h('input', { name: 'token', type: 'password', autocomplete: 'off', required: true, placeholder: 'ldg_…', spellcheck: 'false' }))
        : [
            h('label', null, 'Name', h('input', { name: 'name', type: 'text', autocomplete: 'username', required: true, spellcheck: 'false' })),
            h('label', null, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
          ],
    );
    error.textContent = '';
    fields.querySelector('input')?.focus();
  };

  const form = h(
    'form',
    {
      class: 'login-card',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const data = new FormData(form);
        const body = mode === 'token' ? { token: String(data.get('token') ?? '') } : { name: String(data.get('name') ?? ''), password: String(data.get('password') ?? '') };
        submit.disabled = true;
        error.textContent = '';
        try {
          onLogin(await api.post<SessionInfo>('/ui/login', body));
        } catch (err) {
          error.textContent = err instanceof ApiError ? err.message : String(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div', { class: 'brand big' }, h('span', { class: 'brand-mark' }, 'ld'), 'ldguard'),
    h('p', { class: 'muted' }, 'Dynamic linker alerts from your fleet. Log in with an admin token, or with the password set by ', h('code', null, 'ldguard token passwd'), '.'),
    tabs,
    fields,
    error,
    submit,
  );
  replace(root, h('main', { class: 'login' }, form));
  render();
}
