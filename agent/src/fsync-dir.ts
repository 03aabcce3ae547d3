// fsync(2) of a folder: what makes a name created, renamed or removed in it survive a power loss
// (a file's own fsync covers its data, not its entry in the folder).
import { open } from 'node:fs/promises';

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
