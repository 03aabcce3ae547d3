// sd_notify(3) without libsystemd: READY=1, WATCHDOG=1, STOPPING=1 to $NOTIFY_SOCKET. Node has no
// AF_UNIX datagram sockets, so the native addon sends the datagram. Outside systemd (no
// NOTIFY_SOCKET) it does nothing.
import { errorMessage } from '../../shared/errors.js';
import { loadNative } from './native.js';

let warned = false;

export function notifySystemd(state: string, onError?: (msg: string) => void): void {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return;
  try {
    loadNative().sdNotify(socket, state);
  } catch (err) {
    if (!warned) onError?.(`sd_notify to ${socket} failed: ${errorMessage(err)}`);
    warned = true;
  }
}
