// The account page's "Apps you signed in to": the apps the person let use the account
// (GET /users/me/consents), what each may have, since when, and "Revoke access", confirmed in
// the item itself; revoking also ends the app's sessions, so the Sessions list is read again.

import * as api from './api.js';
import { callApi } from './session.js';
import { $, button, focusElement, setBusy, timeOf, toast } from './ui.js';
import { openSessions } from './view-sessions.js';

// The scopes in words, as the consent page asked for them.
const SCOPE_WORDS = {
  openid: 'know who you are',
  profile: 'see your username',
  email: 'see your email address',
  offline_access: 'stay signed in while you are away',
};

let seq = 0;

/** Wires Retry. */
export function wireConsents() {
  $('consents-retry').addEventListener('click', () => openConsents());
}

/** Loads the apps the caller allowed into the list. */
export async function openConsents() {
  const mine = ++seq;
  $('consents-problem').hidden = true;
  $('consents-loading').hidden = false;
  try {
    const { items } = await callApi((token) => api.listMyConsents(token));
    if (mine !== seq) return;
    $('consents-list').replaceChildren(...items.map(consentItem));
    $('consents-empty').hidden = items.length > 0;
  } catch (err) {
    if (mine !== seq || err.handled) return;
    $('consents-problem-text').textContent = `Could not load your apps. ${err.message}`;
    $('consents-problem').hidden = false;
  } finally {
    if (mine === seq) $('consents-loading').hidden = true;
  }
}

/** Empties the list, e.g. when the person logs out. */
export function clearConsents() {
  seq += 1;
  $('consents-list').replaceChildren();
  $('consents-empty').hidden = true;
  $('consents-problem').hidden = true;
  $('consents-loading').hidden = true;
}

// "know who you are and see your username"
function scopesInWords(scopes) {
  const words = scopes.map((scope) => SCOPE_WORDS[scope] || scope);
  if (words.length < 2) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

// "shop" / "May know who you are and see your username · first allowed Dec 3, 2026" [Revoke access]
function consentItem(consent) {
  const name = consent.client_name;
  const li = document.createElement('li');
  li.className = 'session-item consent-item';
  li.dataset.clientId = consent.client_id;
  const text = document.createElement('div');
  const what = document.createElement('p');
  what.className = 'activity-what';
  what.textContent = name;
  const details = document.createElement('p');
  details.className = 'activity-details';
  details.append(`May ${scopesInWords(consent.scopes)} · first allowed `, timeOf(consent.granted_at));
  text.append(what, details);

  const revoke = button('Revoke access', 'button button-danger-outline', () => askRevoke(li));
  revoke.dataset.action = 'revoke';
  revoke.setAttribute('aria-label', `Revoke access for ${name}`);

  // The confirmation lives in the item, as the persons list's does: no window.confirm.
  const confirm = document.createElement('div');
  confirm.className = 'confirm';
  confirm.hidden = true;
  confirm.setAttribute('role', 'group');
  confirm.setAttribute('aria-label', `Confirm revoking access for ${name}`);
  const question = document.createElement('p');
  question.className = 'confirm-text';
  question.textContent = `Revoke ${name}'s access? It is signed out and must ask you again.`;
  const yes = button('Yes, revoke', 'button button-small button-danger', () => onRevoke(consent, yes));
  const no = button('Cancel', 'button button-small button-secondary', () => cancelRevoke(li));
  no.dataset.action = 'cancel-revoke';
  confirm.append(question, yes, no);
  confirm.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') cancelRevoke(li);
  });

  li.append(text, revoke, confirm);
  return li;
}

function askRevoke(li) {
  li.querySelector('[data-action="revoke"]').hidden = true;
  li.querySelector('.confirm').hidden = false;
  // Focus the harmless choice first, as the WAI-ARIA alert dialog pattern advises.
  focusElement(li.querySelector('[data-action="cancel-revoke"]'));
}

function cancelRevoke(li) {
  li.querySelector('.confirm').hidden = true;
  li.querySelector('[data-action="revoke"]').hidden = false;
  focusElement(li.querySelector('[data-action="revoke"]'));
}

async function onRevoke(consent, yes) {
  const name = consent.client_name;
  const done = setBusy(yes, 'Revoking…');
  try {
    await callApi((token) => api.withdrawConsent(token, consent.client_id));
    toast(`Revoked access for ${name}. It is signed out at its next request.`);
  } catch (err) {
    if (err.handled) return;
    done();
    // 404: revoked meanwhile (another tab, or the app was removed); the fresh list shows that.
    if (err.status !== 404) { toast(`Could not revoke access for ${name}. ${err.message}`, 'error'); return; }
    toast(`${name} had no access any more.`);
  }
  await Promise.all([openConsents(), openSessions()]);
  focusElement($('consents-heading'));
}
