// The session: the access token (in memory only), the refresh token (in this tab's
// sessionStorage, so a reload can restore the session), the one refresh in flight, and the
// logged-in account. It never touches the page: a lost session is reported to the callback
// given to initSession.

import * as api from './api.js';

const REFRESH_KEY = 'tokenauth.refresh_token';
const ADMIN_ROLE = 'admin';

// The access token lives only in this variable: a page reload or a closed tab forgets it.
let accessToken = null;
let user = null;
let refreshing = null; // the one refresh in flight, shared so a rotated token is used once
let onSessionLost = () => {};

// sessionStorage can throw when disabled, so wrap it.
const storage = {
  get() {
    try { return window.sessionStorage.getItem(REFRESH_KEY); } catch { return null; }
  },
  set(value) {
    try { window.sessionStorage.setItem(REFRESH_KEY, value); } catch { /* memory-only session */ }
  },
  clear() {
    try { window.sessionStorage.removeItem(REFRESH_KEY); } catch { /* nothing stored */ }
  },
};

/** Sets `onSessionLost(reason)`, called once the session is over and forgotten. */
export function initSession(handlers) {
  onSessionLost = handlers.onSessionLost;
}

/** Whether this tab kept a refresh token, i.e. the page was reloaded during a session. */
export function hasStoredSession() {
  return Boolean(storage.get());
}

/** The logged-in account, as GET /users/me described it. */
export function currentUser() {
  return user;
}

/** Whether the logged-in account has the admin role. */
export function isAdmin() {
  return Boolean(user && Array.isArray(user.roles) && user.roles.includes(ADMIN_ROLE));
}

/** Exchanges a username and password for tokens. */
export async function logIn(username, password) {
  saveTokens(await api.passwordGrant(username, password));
}

/** After a reload: exchanges the refresh token this tab kept for a new access token. */
export function restore() {
  return refreshAccessToken();
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
  await refreshAccessToken();
  try {
    return await send(accessToken);
  } catch (err) {
    if (err.status === 401) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
}

/** Ends the session on the service and forgets it here; true if the service was unreachable. */
export async function logOut() {
  const token = accessToken;
  const refreshToken = storage.get();
  let unreachable = false;
  // Logout ends the session by its id; revoke also covers an access token that already expired.
  if (token) {
    try { await api.logout(token); } catch (err) { unreachable ||= isTransient(err); }
  }
  if (refreshToken) {
    try { await api.revokeRefreshToken(refreshToken); } catch (err) { unreachable ||= isTransient(err); }
  }
  forgetSession();
  return unreachable;
}

/** Forgets the session here only: the service already ended it (the account was deleted). */
export function endLocally() {
  forgetSession();
}

function saveTokens(tokens) {
  accessToken = tokens.access_token;
  if (tokens.refresh_token) storage.set(tokens.refresh_token);
}

function forgetSession() {
  accessToken = null;
  user = null;
  refreshing = null;
  storage.clear();
}

function refreshAccessToken() {
  // Refresh tokens rotate and a reused one revokes the whole session: never send two at once.
  if (!refreshing) {
    refreshing = exchangeRefreshToken().finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function exchangeRefreshToken() {
  const refreshToken = storage.get();
  if (!refreshToken) throw sessionLost(api.SESSION_ENDED);
  try {
    saveTokens(await api.refreshGrant(refreshToken));
  } catch (err) {
    // 400 invalid_grant: expired, revoked or reused; anything else (offline, 503) may pass.
    if (err.status === 400 || err.status === 401) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
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
