// The dashboard's static files: collector/web/{index.html,style.css,favicon.svg} and the page's
// JavaScript that `npm run build` compiles into collector/web/dist/. Read once, served from memory
// with an ETag; nothing is fetched from anywhere else (the collector may be air-gapped), and every
// response carries the headers below.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { findRepoRoot } from '../../../shared/paths.js';

/**
 * Scripts, styles, images and connections only from this origin (`connect-src 'self'` covers the
 * same-origin ws:// and wss:// feed), nothing inline, no plugins, no framing. Trusted Types with
 * no policy makes any HTML-parsing sink (innerHTML, insertAdjacentHTML, document.write) throw: the
 * page can only ever put alert values into the DOM as text.
 */
export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

export function securityHeaders(tls: boolean): Record<string, string> {
  return {
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy': 'camera=(), microphone=(), geolocation=(), usb=(), payment=()',
    ...(tls ? { 'strict-transport-security': 'max-age=31536000' } : {}),
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>ldguard</title>
<p>The dashboard's scripts are not built. Run <code>npm run build</code> in the ldguard folder, then restart the collector.</p>`;

export class Assets {
  private readonly files = new Map<string, Asset>();
  readonly built: boolean;

  constructor(dir = join(findRepoRoot(), 'collector', 'web')) {
    const add = (url: string, file: string) => {
      const body = readFileSync(file);
      const ext = file.slice(file.lastIndexOf('.'));
      this.files.set(url, { body, type: TYPES[ext] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
    };
    const dist = join(dir, 'dist');
    this.built = existsSync(join(dist, 'main.js'));
    for (const f of ['style.css', 'favicon.svg']) if (existsSync(join(dir, f))) add(`/ui/${f}`, join(dir, f));
    if (this.built) {
      for (const f of readdirSync(dist)) if (f.endsWith('.js')) add(`/ui/${f}`, join(dist, f));
      add('/', join(dir, 'index.html'));
    } else {
      const body = Buffer.from(NOT_BUILT);
      this.files.set('/', { body, type: TYPES['.html']!, etag: '"not-built"' });
    }
  }

  /** Serves the asset at `path` (GET or HEAD) and returns true, or returns false when there is none. */
  serve(path: string, method: string, ifNoneMatch: string | undefined, res: ServerResponse, headers: Record<string, string>): boolean {
    const a = this.files.get(path === '/index.html' ? '/' : path);
    if (!a || (method !== 'GET' && method !== 'HEAD')) return false;
    const h = { ...headers, 'content-type': a.type, etag: a.etag, 'cache-control': 'no-cache' };
    if (ifNoneMatch === a.etag) {
      res.writeHead(304, h);
      res.end();
      return true;
    }
    res.writeHead(200, { ...h, 'content-length': String(a.body.length) });
    res.end(method === 'HEAD' ? undefined : a.body);
    return true;
  }
}
