// The address bar holds the page's state: the view and, on the alert list, its filters
// (#/alerts?status=open&host=web-1), so a filtered view can be bookmarked, shared and gone back to.
//
// Two writers, one reader. A view writes the hash here when its own state changes (the view is
// already showing it: the router must not rebuild it). Links (hashchange) and back/forward
// (popstate) change it from outside: the router rebuilds the view from the hash. The router
// tells the two apart by comparing the hash with the last one shown.
let shown = '';

/** The hash the page shows now (the default view's when empty). */
export function currentHash(): string {
  return location.hash || '#/alerts';
}

/** True when the address bar moved away from what the page shows (and records it as shown). */
export function takeNavigation(): boolean {
  const now = currentHash();
  if (now === shown) return false;
  shown = now;
  return true;
}

/**
 * Writes a view's own state to the address bar: a new history entry when the user changed it
 * (`push`: back returns to the previous filters), in place otherwise. Does not route.
 */
export function writeHash(hash: string, push: boolean): void {
  if (hash === currentHash()) return;
  shown = hash;
  if (push) history.pushState(null, '', hash);
  else history.replaceState(null, '', hash);
}
