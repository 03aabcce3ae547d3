// Picks the source the way beats picks its backends: try each allowed one in order, log every
// fallback with its reason, fail with the last error when none works.
import { LdgError, errorMessage } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/log.js';
import type { SourceChoice } from '../config.js';
import { FanotifySource } from './fanotify.js';
import type { Source } from './source.js';

export async function openSource(choice: SourceChoice, dirs: readonly string[], prefixes: readonly string[], graceMs: number, log: Logger, opts: { nestedDirs?: boolean } = {}): Promise<Source> {
  if (choice !== 'inotify') {
    try {
      return new FanotifySource(dirs, prefixes, graceMs, opts.nestedDirs ?? true);
    } catch (err) {
      if (choice === 'fanotify') throw err;
      const code = (err as { code?: string }).code ?? 'LDG_ERR_FANOTIFY';
      log.warn({ code, err: errorMessage(err) }, `fanotify unavailable (${code}): falling back to inotify; writers will not be attributed exactly`);
    }
  }
  try {
    // Loaded only here: @parcel/watcher and its addon cost the fanotify agent ~1 MB for nothing.
    const { InotifySource } = await import('./inotify.js');
    return await InotifySource.open(dirs, prefixes);
  } catch (err) {
    throw new LdgError('LDG_ERR_INOTIFY', `inotify could not watch ${dirs.join(', ')}: ${errorMessage(err)}. Raise fs.inotify.max_user_watches, or run with fanotify (root or CAP_SYS_ADMIN)`, { cause: err });
  }
}
