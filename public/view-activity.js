// Recent activity on the account page: the caller's own security events (GET /users/me/events),
// newest first, each as a sentence with its time, address and device; older ones on request.

import * as api from './api.js';
import { callApi } from './session.js';
import { $, focusElement } from './ui.js';

const PAGE_SIZE = 20;
const AUTO_RETRY_MAX_S = 30; // a 503 asking for a short wait is retried without a click

const EVENT_SENTENCES = {
  user_registered: 'Account created',
  login_succeeded: 'Signed in',
  login_failed: 'Failed sign-in',
  login_throttled: 'Sign-in refused after too many failures',
  password_changed: 'Password changed',
  password_reset_requested: 'Password reset asked for',
  password_reset_not_sent: 'Password reset asked for (no confirmed address, so no mail was sent)',
  password_reset: 'Password reset from the mailed link; every session ended',
  email_changed: 'Email address changed',
  email_verified: 'Email address confirmed',
  logout: 'Signed out',
  session_revoked: 'Session ended',
  refresh_reuse_detected: 'Session ended: a refresh token was used twice, which may mean it was stolen',
  session_ended: 'Session ended',
  mfa_failed: 'Wrong code at sign-in (the password was right)',
  totp_enabled: 'Authenticator app turned on',
  totp_removed: 'Authenticator app turned off',
  recovery_code_used: 'Signed in with a recovery code',
  recovery_codes_regenerated: 'New recovery codes made; the old ones stopped working',
  passkey_added: 'Passkey added',
  passkey_removed: 'Passkey removed',
  passkey_used: 'Signed in with a passkey',
  passkey_sign_count_regressed: 'A passkey was refused: its counter went back, which may mean it was copied',
};

let next = null;
let seq = 0;

/** Wires "Show older activity" and Retry. */
export function wireActivity() {
  $('activity-more').addEventListener('click', () => loadEvents({ more: true }));
}

/** Loads the newest events into an empty list. */
export function openActivity() {
  clearActivity();
  return loadEvents({ more: false });
}

/** Empties the list, e.g. when the person logs out. */
export function clearActivity() {
  seq += 1;
  next = null;
  $('activity-list').replaceChildren();
  $('activity-more').hidden = true;
  $('activity-empty').hidden = true;
  $('activity-problem').hidden = true;
}

async function loadEvents({ more }) {
  const mine = ++seq;
  const cursor = more ? next : null;
  $('activity-problem').hidden = true;
  $('activity-loading').hidden = false;
  $('activity-more').disabled = true;
  try {
    const page = await callApi((token) => api.listEvents(token, { limit: PAGE_SIZE, cursor }));
    if (mine !== seq) return;
    const items = page.items.map(eventItem);
    $('activity-list').append(...items);
    next = page.next_cursor || null;
    $('activity-more').hidden = !next;
    $('activity-empty').hidden = $('activity-list').children.length > 0;
    if (more && items.length) focusElement(items[0].querySelector('.activity-what'));
  } catch (err) {
    if (mine !== seq || err.handled) return;
    const retry = () => loadEvents({ more });
    $('activity-retry').onclick = retry;
    $('activity-problem').hidden = false;
    if (err.status === 503 && err.retryAfter !== null && err.retryAfter <= AUTO_RETRY_MAX_S) {
      const wait = Math.max(1, err.retryAfter);
      $('activity-problem-text').textContent = `Could not load your activity: the service is temporarily unavailable. Trying again in ${wait} seconds…`;
      window.setTimeout(() => { if (mine === seq) retry(); }, wait * 1000);
    } else {
      $('activity-problem-text').textContent = `Could not load your activity. ${err.message}`;
    }
  } finally {
    if (mine === seq) {
      $('activity-loading').hidden = true;
      $('activity-more').disabled = false;
    }
  }
}

// "Failed sign-in · 2 Dec 2026, 10:00 · from 127.0.0.1 · Chrome 131 on Linux"
function eventItem(event) {
  const li = document.createElement('li');
  li.className = 'activity-item';
  li.dataset.event = event.event;
  const what = document.createElement('p');
  what.className = 'activity-what';
  what.tabIndex = -1; // "Show older" moves the focus to the first older event
  what.textContent = EVENT_SENTENCES[event.event] || readable(event.event);
  const details = document.createElement('p');
  details.className = 'activity-details';
  const time = document.createElement('time');
  time.dateTime = event.time;
  time.textContent = new Date(event.time).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  details.append(time);
  if (event.address) details.append(` · from ${event.address}`);
  if (event.device) details.append(` · ${event.device}`);
  li.append(what, details);
  return li;
}

function readable(name) {
  const text = String(name).replaceAll('_', ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}
