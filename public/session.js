// The session: the access token (in memory only), the one refresh in flight, and the
// logged-in account. The refresh token never reaches this page: the service keeps it in an
// HttpOnly cookie (RFC 10017 §6.2) that the browser sends to the /auth/session routes only.
// It never touches the page: a lost session is reported to the callback given to initSession,
// and a route asking for a fresher sign-in (step-up, RFC 9470) to the one that asks the person.

import * as api from './api.js';
import { getPasskey } from './passkeys.js';

const ADMIN_ROLE = 'admin';
const REFRESH_LOCK = 'tokenauth-refresh'; // a Web Lock every tab of this origin shares

// The access token lives only in this variable: a page reload or a closed tab forgets it.
let accessToken = null;
let user = null;
let refreshing = null; // the one refresh in flight, shared by every call of this tab
let confirming = null; // the one step-up in flight, shared by every call of this tab
let onSessionLost = () => {};
let onStepUp = async () => false;

/**
 * Sets `onSessionLost(reason)`, called once the session is over and forgotten, and
 * `onStepUp(challenge)`, which asks the person to sign in again (reauthenticate) and resolves
 * true when they did, false when they declined.
 */
export function initSession(handlers) {
  onSessionLost = handlers.onSessionLost;
  onStepUp = handlers.onStepUp;
}

/** The logged-in account, as GET /users/me described it. */
export function currentUser() {
  return user;
}

/** Whether the logged-in account has the admin role. */
export function isAdmin() {
  return Boolean(user && Array.isArray(user.roles) && user.roles.includes(ADMIN_ROLE));
}

/**
 * Exchanges a username and password for an access token and the session cookie; null when
 * that is done, or `{ mfaToken, methods }` when the account has a second factor to give next
 * (logInSecondStep). With this browser's live session cookie, the service re-authenticates
 * that session instead of opening another (the step-up).
 */
export async function logIn(username, password) {
  try {
    accessToken = (await api.sessionLogin(username, password)).access_token;
    return null;
  } catch (err) {
    if (err.code !== 'mfa_required' || !err.body || typeof err.body.mfa_token !== 'string') throw err;
    const methods = Array.isArray(err.body.mfa_methods) ? err.body.mfa_methods : [];
    return { mfaToken: err.body.mfa_token, methods };
  }
}

/** Finishes a two-step login with `proof` ('otp' or 'recovery_code'); the answer's extras, e.g. `recovery_codes_left`. */
export async function logInSecondStep(mfaToken, proof, value) {
  const { access_token: token, ...extras } = await api.sessionSecondFactor(mfaToken, proof, value);
  accessToken = token;
  delete extras.token_type;
  delete extras.expires_in;
  return extras;
}

/** Signs in with a passkey alone (a discoverable credential): the browser asks for it. */
export async function logInWithPasskey() {
  const { options, challenge_id: challengeId } = await api.passkeyRequestOptions();
  const assertion = await getPasskey(options);
  accessToken = (await api.sessionPasskey(assertion, challengeId)).access_token;
}

/** Finishes a two-step login (or a step-up's second step) with one of the account's passkeys. */
export async function logInSecondStepWithPasskey(mfaToken) {
  const { options } = await api.passkeyRequestOptions(mfaToken);
  return logInSecondStep(mfaToken, 'passkey', await getPasskey(options));
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

/**
 * Calls a protected route with `send(accessToken)`. On 401 refreshes once and retries (RFC
 * 6750); on a 401 asking for a fresher sign-in (RFC 9470) has the person confirm it is them,
 * then retries once. Every view's call goes through here, so every view gets both.
 */
export async function callApi(send) {
  try {
    return await send(accessToken);
  } catch (err) {
    if (api.isStepUpRequired(err)) return stepUpAndRetry(err, send);
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
    if (api.isStepUpRequired(err)) return stepUpAndRetry(err, send);
    if (err.status === 401) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
}

// The token is good but its sign-in too old or too weak: sign in again on this session, retry once.
async function stepUpAndRetry(refusal, send) {
  if (!(await confirmIdentity(refusal.challenge))) {
    // Declined; or the session ended meanwhile, and the login form already says so.
    throw new api.ApiError(api.STEP_UP_NEEDED, { status: 401, code: refusal.code, handled: !user });
  }
  try {
    return await send(accessToken);
  } catch (err) {
    if (err.status === 401 && !api.isStepUpRequired(err)) throw sessionLost(api.SESSION_ENDED);
    throw err;
  }
}

function confirmIdentity(challenge) {
  // One dialog at a time in this tab: every call refused meanwhile waits for the same answer.
  if (!confirming) {
    confirming = Promise.resolve(onStepUp(challenge)).finally(() => { confirming = null; });
  }
  return confirming;
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
  confirming = null;
}

function refreshAccessToken() {
  // One refresh at a time in this tab: every call waiting on a 401 shares it.
  if (!refreshing) {
    refreshing = oneTabAtATime(refreshFromCookie).finally(() => { refreshing = null; });
  }
  return refreshing;
}

// The tabs of this browser take turns, so each refresh sends the cookie the one before it
// stored. Racing, a refresh sent after another's answer could rotate the cookie again before
// a slower one sent earlier arrives: that one would then present a token two rotations old,
// which the service takes as reuse and ends the session for every tab. Web Locks are shared
// by every tab of this origin; without them (an older browser) the service's reuse interval
// still keeps two tabs refreshing at once logged in.
function oneTabAtATime(work) {
  return navigator.locks ? navigator.locks.request(REFRESH_LOCK, work) : work();
}

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
