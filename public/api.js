// The service's HTTP API: one fetch wrapper per route, and every failure turned into an
// ApiError carrying a sentence a person can act on. No DOM code: callers decide what to show.

/** What a person reads when the service no longer accepts their session. */
export const SESSION_ENDED = 'Your session has ended. Please log in again.';

/** What a person reads when an action needed them to confirm it is them, and they did not. */
export const STEP_UP_NEEDED = 'This needs you to confirm it is you (your password, and your code if you have a second factor). Nothing was changed.';

/** A failed call: `message` is for people, the other fields are for the code that reacts. */
export class ApiError extends Error {
  constructor(message, {
    status = 0, code = null, fields = [], retryAfter = null, handled = false, said = '', challenge = {}, body = null,
  } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.retryAfter = retryAfter;
    this.handled = handled; // true when the UI already reacted (e.g. the session ended)
    this.said = said; // the service's own sentence (error_description or detail), when it gave one
    this.challenge = challenge; // the WWW-Authenticate parameters, e.g. RFC 9470's max_age and acr_values
    this.body = body; // the answer's JSON, e.g. the mfa_token of a 403 mfa_required
  }
}

/** The 401 of a route that needs a more recent (or a two-factor) sign-in (RFC 9470). */
export function isStepUpRequired(err) {
  return err.status === 401 && err.code === 'insufficient_user_authentication';
}

/* ---------- the routes ---------- */

/** POST /users: creates an account; an address given (optional) is mailed a code to verify it. */
export function register(username, password, email = '') {
  const body = email ? { username, password, email } : { username, password };
  return request('POST', '/users', { body });
}

/** POST /auth/password-reset: always 202 `{}`; a mail goes only to a verified address. */
export function requestPasswordReset(usernameOrEmail) {
  const body = usernameOrEmail.includes('@') ? { email: usernameOrEmail } : { username: usernameOrEmail };
  return request('POST', '/auth/password-reset', { body });
}

/** POST /auth/password-reset/confirm: 204; every session of the account ends, nobody is logged in. */
export function confirmPasswordReset(token, newPassword) {
  return request('POST', '/auth/password-reset/confirm', { body: { token, new_password: newPassword } });
}

/** PUT /users/me/email: 202 with the account; the new address is mailed a code, the old one told. */
export function changeEmail(token, email, currentPassword) {
  return request('PUT', '/users/me/email', { body: { email, current_password: currentPassword }, token });
}

/** POST /users/me/email/verify: 204 when the code is the one mailed to the address. */
export function verifyEmail(token, code) {
  return request('POST', '/users/me/email/verify', { body: { code }, token });
}

/** POST /auth/session: logs in; the access token in the answer, the refresh token in an HttpOnly cookie. */
export function sessionLogin(username, password) {
  return request('POST', '/auth/session', { body: { username, password }, cookie: true });
}

/**
 * POST /auth/session, second step: `proof` is 'otp' or 'recovery_code'. Its answer may say
 * `recovery_codes_left`. Also the second step of a re-authentication (step-up).
 */
export function sessionSecondFactor(mfaToken, proof, value) {
  return request('POST', '/auth/session', { body: { mfa_token: mfaToken, [proof]: value }, cookie: true });
}

/** POST /auth/session with a passkey alone: a passwordless sign-in (`challenge_id` from passkeyRequestOptions). */
export function sessionPasskey(passkey, challengeId) {
  return request('POST', '/auth/session', { body: { passkey, challenge_id: challengeId }, cookie: true });
}

/** POST /auth/passkey/options: `{options, challenge_id}` for navigator.credentials.get(); with an mfa_token, for that login's passkeys. */
export function passkeyRequestOptions(mfaToken = null) {
  return request('POST', '/auth/passkey/options', { body: mfaToken ? { mfa_token: mfaToken } : {} });
}

/** POST /users/me/passkeys/options: creation options for navigator.credentials.create(), with their `challenge_id`. */
export function passkeyCreationOptions(token) {
  return request('POST', '/users/me/passkeys/options', { token });
}

/** POST /users/me/passkeys: keeps the new passkey; 201 `{id, name, created_at, last_used_at}`. */
export function addPasskey(token, credential, name, challengeId) {
  return request('POST', '/users/me/passkeys', { body: { credential, name, challenge_id: challengeId }, token });
}

/** PATCH /users/me/passkeys/{id}: a new name. */
export function renamePasskey(token, id, name) {
  return request('PATCH', `/users/me/passkeys/${encodeURIComponent(id)}`, { body: { name }, token });
}

/** DELETE /users/me/passkeys/{id}: 204 (needs a recent sign-in with the second factor). */
export function removePasskey(token, id) {
  return request('DELETE', `/users/me/passkeys/${encodeURIComponent(id)}`, { token });
}

/** POST /auth/session/refresh: rotates the session cookie and answers a new access token. */
export function sessionRefresh() {
  return request('POST', '/auth/session/refresh', { cookie: true });
}

/** DELETE /auth/session: ends the cookie's session and clears the cookie. */
export function sessionLogout() {
  return request('DELETE', '/auth/session', { cookie: true });
}

/** GET /users/me: the logged-in account. */
export function me(token) {
  return request('GET', '/users/me', { token });
}

/** GET /auth/policy: the password and username rules the service applies. */
export function policy() {
  return request('GET', '/auth/policy');
}

/** PUT /users/me/password: 204; every other session of the account ends. */
export function changePassword(token, currentPassword, newPassword) {
  return request('PUT', '/users/me/password', {
    body: { current_password: currentPassword, new_password: newPassword },
    token,
  });
}

/** GET /users/me/mfa: `{totp, recovery_codes_left, passkeys}`. */
export function mfaStatus(token) {
  return request('GET', '/users/me/mfa', { token });
}

/** POST /users/me/mfa/totp (step-up): a pending secret `{secret, otpauth_uri, qr_svg}`. */
export function startTotp(token) {
  return request('POST', '/users/me/mfa/totp', { token });
}

/** POST /users/me/mfa/totp/confirm: activates the pending secret; `{recovery_codes}`, shown once. */
export function confirmTotp(token, code) {
  return request('POST', '/users/me/mfa/totp/confirm', { body: { code }, token });
}

/** DELETE /users/me/mfa/totp (step-up with a second factor): turns the authenticator app off. */
export function removeTotp(token) {
  return request('DELETE', '/users/me/mfa/totp', { token });
}

/** POST /users/me/mfa/recovery-codes (step-up with a second factor): a new set; the old ones stop working. */
export function newRecoveryCodes(token) {
  return request('POST', '/users/me/mfa/recovery-codes', { token });
}

/** GET /users/me/events: one page of the account's security events, newest first. */
export function listEvents(token, { limit, cursor }) {
  return request('GET', `/users/me/events?${pageParams({ limit, cursor })}`, { token });
}

/** DELETE /users/me: deletes the account, its sessions and its events. */
export function deleteAccount(token, currentPassword) {
  return request('DELETE', '/users/me', { body: { current_password: currentPassword }, token });
}

/** GET /users/me/sessions: the caller's live sessions, `current` marking this one. */
export function listMySessions(token) {
  return request('GET', '/users/me/sessions', { token });
}

/** DELETE /users/me/sessions/{id}: ends one of the caller's sessions. */
export function endMySession(token, id) {
  return request('DELETE', `/users/me/sessions/${encodeURIComponent(id)}`, { token });
}

/** DELETE /users/me/sessions: ends every session of the caller but this one. */
export function endMyOtherSessions(token) {
  return request('DELETE', '/users/me/sessions', { token });
}

/** GET /users/me/consents: the apps the caller let use the account, with the scopes. */
export function listMyConsents(token) {
  return request('GET', '/users/me/consents', { token });
}

/** DELETE /users/me/consents/{client_id}: withdraws an app's access; its sessions of the caller end. */
export function withdrawConsent(token, clientId) {
  return request('DELETE', `/users/me/consents/${encodeURIComponent(clientId)}`, { token });
}

/** GET /users: one page of accounts (admins). */
export function listUsers(token, { limit, cursor }) {
  return request('GET', `/users?${pageParams({ limit, cursor })}`, { token });
}

/** PATCH /users/{id}: disables or enables an account (admins); disabling ends its sessions. */
export function setUserDisabled(token, id, disabled) {
  return request('PATCH', `/users/${encodeURIComponent(id)}`, { body: { disabled }, token });
}

/** DELETE /users/{id}/sessions: ends every session of an account (admins). */
export function endUserSessions(token, id) {
  return request('DELETE', `/users/${encodeURIComponent(id)}/sessions`, { token });
}

/** GET /persons: one page of at most `limit` persons in `order` from `cursor` (null for the first). */
export function listPersons(token, { limit, cursor, order }) {
  return request('GET', `/persons?${pageParams({ limit, cursor, order })}`, { token });
}

function pageParams({ limit, cursor, order }) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (order) params.set('order', order);
  if (cursor) params.set('cursor', cursor);
  return params;
}

/** POST /persons: adds a person (admins). */
export function createPerson(token, person) {
  return request('POST', '/persons', { body: person, token });
}

/** PATCH /persons/{id}: changes a person (admins). */
export function updatePerson(token, id, person) {
  return request('PATCH', `/persons/${encodeURIComponent(id)}`, { body: person, token });
}

/** DELETE /persons/{id}: deletes a person (admins). */
export function deletePerson(token, id) {
  return request('DELETE', `/persons/${encodeURIComponent(id)}`, { token });
}

/* ---------- requests and answers ---------- */

async function request(method, path, { body, token, cookie = false } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  // The cookie routes refuse a request without it: a cross-site page cannot send it unasked.
  if (cookie) headers['X-Requested-With'] = 'fetch';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    // Not "check your connection": the service being down looks the same from here.
    throw new ApiError('Could not reach the service: it may be down, or this device may be offline.');
  }
  const data = await readJson(response);
  if (response.ok) return data;
  if (cookie && response.status === 403 && !(data && data.error === 'mfa_required')) {
    // The CSRF check refused it: only a page on another origin (or a proxy dropping headers) gets here.
    throw new ApiError('The service refused this page\'s request: open the client from the service\'s own address.', { status: 403 });
  }
  throw toApiError(response, data);
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return null; } // e.g. an HTML page from a proxy
}

// Reads problem+json ({title, detail, errors}) and OAuth errors ({error, error_description}).
function toApiError(response, data) {
  const retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
  const challenge = response.headers.get('WWW-Authenticate') || '';
  const fromChallenge = /error="([^"]*)"/.exec(challenge);
  const code = (data && typeof data.error === 'string' && data.error) || (fromChallenge && fromChallenge[1]) || null;
  const fields = data && Array.isArray(data.errors)
    ? data.errors
      .filter((e) => e && typeof e.message === 'string')
      .map((e) => ({ field: fieldName(e.field), message: e.message }))
    : [];
  const message = describeFailure(response.status, data, code, retryAfter);
  const said = (data && typeof data.error_description === 'string' && data.error_description)
    || (data && typeof data.detail === 'string' && data.detail) || '';
  return new ApiError(message, {
    status: response.status, code, fields, retryAfter, said, challenge: challengeParams(challenge), body: data,
  });
}

// 'Bearer realm="tokenauth", error="...", max_age=600, acr_values="aal2"' -> { realm, error, max_age, acr_values }.
function challengeParams(header) {
  const params = {};
  for (const [, name, quoted, bare] of header.matchAll(/([a-z_]+)=(?:"([^"]*)"|([^\s,]+))/gi)) {
    params[name] = quoted !== undefined ? quoted : bare;
  }
  return params;
}

// Field names may come as "age", "/age" or "body.age": keep the last segment.
function fieldName(raw) {
  if (typeof raw !== 'string') return '';
  const parts = raw.split(/[./]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : '';
}

// Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3).
function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

function humanWait(seconds) {
  if (seconds === null) return 'a little while';
  if (seconds < 2) return 'a moment';
  if (seconds < 90) return `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 90) return `${minutes} minutes`;
  return `${Math.ceil(minutes / 60)} hours`;
}

// "You can try again at 10:42 (in 15 minutes).": the clock time, which outlives the page.
function whenAgain(seconds) {
  if (seconds === null) return 'Please wait a little while and try again.';
  const at = new Date(Date.now() + seconds * 1000);
  const clock = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `You can try again at ${clock} (in ${humanWait(seconds)}).`;
}

const OAUTH_MESSAGES = {
  invalid_grant: 'Wrong username or password.',
  invalid_request: 'The service could not read that request.',
  invalid_client: 'This client is not allowed to sign in.',
  unsupported_grant_type: 'This way of signing in is not supported by the service.',
};

// Turns any failure into a sentence a person can act on, never a bare status code.
function describeFailure(status, data, code, retryAfter) {
  if (status === 429) return `Too many attempts. ${whenAgain(retryAfter)}`;
  if (status === 503) return `The service is temporarily unavailable. Please try again in ${humanWait(retryAfter)}.`;
  if (status >= 500) return 'The service ran into a problem. Please try again later.';
  if (status === 413) return 'That is more data than the service accepts.';
  if (code === 'mfa_required') return 'Enter the code from your authenticator app to finish logging in.';
  if (status === 403) return 'Only administrators can do that.';
  if (code === 'insufficient_user_authentication') return STEP_UP_NEEDED;
  if (status === 401) return SESSION_ENDED;
  if (code && OAUTH_MESSAGES[code]) return OAUTH_MESSAGES[code];
  if (data && typeof data.error_description === 'string' && data.error_description) return data.error_description;
  if (data && Array.isArray(data.errors) && data.errors.length) return 'Please correct the highlighted fields.';
  if (data && typeof data.detail === 'string' && data.detail) return sentence(data.detail);
  if (data && typeof data.title === 'string' && data.title) return sentence(data.title);
  if (status === 404) return 'That item no longer exists.';
  return 'The service gave an unexpected answer. Please try again.';
}

/** The text with a capital first letter and a full stop at the end. */
export function sentence(text) {
  const trimmed = text.trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}
