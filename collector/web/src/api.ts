// Calls to the collector's dashboard API (/ui/api/*), with the session cookie the browser holds
// and, on state-changing calls, the session's CSRF token. A 401 means the session ended: the app
// listens for 'ldg:logged-out' and shows the login form.

import type { WebPrefs } from './api-types.js';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export interface SessionInfo {
  name: string;
  csrf: string;
  expires: string;
  version?: string;
  /** The login's preferences (the zone times are shown in), kept by the collector. */
  prefs?: WebPrefs;
}

let csrf = '';

export function setCsrf(token: string): void {
  csrf = token;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-ldguard-csrf'] = csrf;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch {
    throw new ApiError(0, 'LDG_ERR_NETWORK', 'the collector did not answer; check that it is running');
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(res.status, 'LDG_ERR_WEB_REPLY', `unexpected reply (${res.status})`);
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string } }).error;
    if (res.status === 401 && path !== '/ui/login') window.dispatchEvent(new Event('ldg:logged-out'));
    throw new ApiError(res.status, e?.code ?? 'LDG_ERR_WEB', e?.message ?? `request failed (${res.status})`);
  }
  return json as T;
}

export const api = {
  get: <T>(path: string) => call<T>('GET', path),
  post: <T>(path: string, body: unknown) => call<T>('POST', path, body),
  patch: <T>(path: string, body: unknown) => call<T>('PATCH', path, body),
  put: <T>(path: string, body: unknown) => call<T>('PUT', path, body),
};

export function query(params: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
