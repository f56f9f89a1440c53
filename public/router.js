// Hash routes, so that every view has a URL with no server routes and no build step:
// #/login, #/persons?order=newest&size=10&page=3, #/account, #/security, #/users (admins), #/forgot,
// #/reset?token=... and #/verify-email?code=... (the pages the service's mails link to).
// Back, Forward, a typed or bookmarked URL all arrive as a hashchange; the views move the URL
// themselves with go().

const DEFAULT_ROUTE = 'persons';
const ROUTES = new Set(['login', 'persons', 'account', 'security', 'users', 'forgot', 'reset', 'verify-email']);

/** The route in the address bar: { name, params }. */
export function currentRoute() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const name = ROUTES.has(path) ? path : DEFAULT_ROUTE;
  return { name, params: new URLSearchParams(query) };
}

/** The hash for a route and its parameters. */
export function routeHash(name, params = {}) {
  const query = new URLSearchParams(params).toString();
  return `#/${name}${query ? `?${query}` : ''}`;
}

/**
 * Puts the route in the address bar without announcing it (the caller already shows it):
 * a new history entry, or with `replace` the current one (e.g. a page that was corrected).
 */
export function go(name, params = {}, { replace = false } = {}) {
  const hash = routeHash(name, params);
  if (window.location.hash === hash) return;
  // pushState and replaceState fire no hashchange, so the view is not loaded a second time.
  if (replace) window.history.replaceState(null, '', hash);
  else window.history.pushState(null, '', hash);
}

/** Calls `handler(route)` when the person moves through history or types a URL. */
export function onRouteChange(handler) {
  window.addEventListener('hashchange', () => handler(currentRoute()));
}
