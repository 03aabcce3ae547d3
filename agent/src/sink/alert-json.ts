// One JSON text per alert, whichever sinks ask for it: serializing an alert (~5 kB) is among the
// costliest steps between the kernel event and the alert line, and every sink needs the same text.
// Sound because a sink never changes an alert it was given (see Sink).
import type { Alert } from '../../../shared/ecs.js';

const texts = new WeakMap<Alert, string>();

export function alertJson(a: Alert): string {
  let text = texts.get(a);
  if (text === undefined) {
    text = JSON.stringify(a);
    texts.set(a, text);
  }
  return text;
}
