// The account page's Sessions section: where the account is signed in (GET /users/me/sessions),
// each with its device, address, sign-in and last use, "This session" for the caller's own, an
// End button for each other one, and "End all other sessions".

import * as api from './api.js';
import { callApi } from './session.js';
import { $, focusElement, setBusy, timeOf, toast } from './ui.js';

let seq = 0;

/** Wires "End all other sessions" and Retry. */
export function wireSessions() {
  $('sessions-end-others').addEventListener('click', onEndOthers);
  $('sessions-retry').addEventListener('click', () => openSessions());
}

/** Loads the caller's live sessions into the list. */
export async function openSessions() {
  const mine = ++seq;
  $('sessions-problem').hidden = true;
  $('sessions-loading').hidden = false;
  try {
    const { items } = await callApi((token) => api.listMySessions(token));
    if (mine !== seq) return;
    $('sessions-list').replaceChildren(...items.map(sessionItem));
    $('sessions-end-others').hidden = !items.some((s) => !s.current);
  } catch (err) {
    if (mine !== seq || err.handled) return;
    $('sessions-problem-text').textContent = `Could not load your sessions. ${err.message}`;
    $('sessions-problem').hidden = false;
  } finally {
    if (mine === seq) $('sessions-loading').hidden = true;
  }
}

/** Empties the list, e.g. when the person logs out. */
export function clearSessions() {
  seq += 1;
  $('sessions-list').replaceChildren();
  $('sessions-end-others').hidden = true;
  $('sessions-problem').hidden = true;
  $('sessions-loading').hidden = true;
}

// "Chrome 131 on Linux [This session]" / "from 127.0.0.1 · signed in … · last used …" [End]
function sessionItem(session) {
  const device = session.device || 'Unknown device';
  const li = document.createElement('li');
  li.className = 'session-item';
  li.dataset.sessionId = session.id;
  const text = document.createElement('div');
  const what = document.createElement('p');
  what.className = 'activity-what';
  what.textContent = device;
  if (session.current) {
    const badge = document.createElement('span');
    badge.className = 'role';
    badge.textContent = 'This session';
    what.append(' ', badge);
  }
  const details = document.createElement('p');
  details.className = 'activity-details';
  details.append(`from ${session.address || 'an unknown address'} · signed in `, timeOf(session.created_at),
    ' · last used ', timeOf(session.last_used_at));
  text.append(what, details);
  li.append(text);
  if (!session.current) {
    const end = document.createElement('button');
    end.type = 'button';
    end.className = 'button button-secondary';
    end.textContent = 'End';
    end.setAttribute('aria-label', `End the session on ${device}`);
    end.addEventListener('click', () => onEnd(end, session.id, device));
    li.append(end);
  }
  return li;
}

async function onEnd(button, id, device) {
  const done = setBusy(button, 'Ending…');
  try {
    await callApi((token) => api.endMySession(token, id));
  } catch (err) {
    done();
    if (err.handled) return;
    // 404: it ended meanwhile (expired, or ended elsewhere); the fresh list shows that.
    if (err.status !== 404) { toast(`Could not end the session. ${err.message}`, 'error'); return; }
  }
  toast(`Ended the session on ${device}. It is signed out at its next request.`);
  await openSessions();
  focusElement($('sessions-heading'));
}

async function onEndOthers() {
  const button = $('sessions-end-others');
  const done = setBusy(button, 'Ending other sessions…');
  try {
    await callApi((token) => api.endMyOtherSessions(token));
  } catch (err) {
    done();
    if (!err.handled) toast(`Could not end the other sessions. ${err.message}`, 'error');
    return;
  }
  done();
  toast('Ended every other session. This one goes on.');
  await openSessions();
  focusElement($('sessions-heading'));
}
