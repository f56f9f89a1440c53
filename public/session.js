// The session: the access token (in memory only), the one refresh in flight, and the
// logged-in account. The refresh token never reaches this page: the service keeps it in an
// HttpOnly cookie (RFC 10017 §6.2) that the browser sends to the /auth/session routes only.
// It never touches the page: a lost session is reported to the callback given to initSession.

import * as api from './api.js';

const ADMIN_ROLE = 'admin';

// The access token lives only in this variable: a page reload or a closed tab forgets it.
let accessToken = null;
let user = null;
let refreshing = null; // the one refresh in flight, shared by every call of this tab
let onSessionLost = () => {};

/** Sets `onSessionLost(reason)`, called once the session is over and forgotten. */
export function initSession(handlers) {
  onSessionLost = handlers.onSessionLost;
}

/** The logged-in account, as GET /users/me described it. */
export function currentUser() {
  return user;
}

/** Whether the logged-in account has the admin role. */
export function isAdmin() {
  return Boolean(user && Array.isArray(user.roles) && user.roles.includes(ADMIN_ROLE));
}

/** Exchanges a username and password for an access token and the session cookie. */
export async function logIn(username, password) {
  accessToken = (await api.sessionLogin(username, password)).access_token;
}

/**
 * After a reload: one cookie refresh. True when a session was restored, false when the
 * browser has no live session cookie (nothing is reported then: nobody was logged out).
 */
export async function restore() {
  try {
    await refreshAccessToken();
    return true;
  } catch (err) {
    if (err.status !== 401) throw err;
    forgetSession();
    return false;
  }
}

/** Fetches the logged-in account and keeps it. */
export async function loadUser() {
  user = await callApi(api.me);
}

/** Calls a protected route with `send(accessToken)`; on 401 refreshes once and retries (RFC 6750). */
export async function callApi(send) {
  try {
    return await send(accessToken);
  } catch (err) {
    if (err.status !== 401) throw err;
  }
  try {
    await refreshAccessToken();
  } catch (err) {
    // 401: the cookie's session is over (ended, expired, disabled); anything else may pass.
    if (err.status === 401) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
  try {
    return await send(accessToken);
  } catch (err) {
    if (err.status === 401) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
}

/** Ends the session on the service and forgets it here; true if the service was unreachable. */
export async function logOut() {
  let unreachable = false;
  // The cookie names the session, so this works even when the access token already expired.
  try { await api.sessionLogout(); } catch (err) { unreachable = isTransient(err); }
  forgetSession();
  return unreachable;
}

/** Forgets a session the service already ended (the account was deleted), and its cookie. */
export async function endLocally() {
  forgetSession();
  // The page cannot touch the HttpOnly cookie; the cookie logout clears it (and ends nothing).
  try { await api.sessionLogout(); } catch { /* a dead cookie only costs one 401 at the next start */ }
}

function forgetSession() {
  accessToken = null;
  user = null;
  refreshing = null;
}

function refreshAccessToken() {
  // One refresh at a time in this tab: every call waiting on a 401 shares it.
  if (!refreshing) {
    refreshing = refreshFromCookie().finally(() => { refreshing = null; });
  }
  return refreshing;
}

// Tabs refreshing at once all get the same new cookie within the service's reuse interval.
async function refreshFromCookie() {
  accessToken = (await api.sessionRefresh()).access_token;
}

// The session is over: forget it, tell the page why, and tell callers to stop.
function sessionLost(reason) {
  forgetSession();
  onSessionLost(reason);
  return new api.ApiError(reason, { status: 401, handled: true });
}

function isTransient(err) {
  return err.status === 0 || err.status === 429 || err.status >= 500;
}
