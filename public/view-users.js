// The admin Users page (#/users): a page of accounts (GET /users, by cursor), each with
// Disable/Enable (PATCH /users/{id}) and End sessions (DELETE /users/{id}/sessions). The
// service's refusals (e.g. the last active admin) show as its sentence in the toast.

import * as api from './api.js';
import { callApi, currentUser } from './session.js';
import { $, flash, setBusy, toast } from './ui.js';

const PAGE_SIZE = 20;

// The cursor that starts each page seen; the API has no "previous" cursor.
let cursors = [null];
let pageIndex = 0;
let next = null;
let seq = 0;

/** Wires the pager and Retry. */
export function wireUsers() {
  $('users-prev').addEventListener('click', () => loadPage(pageIndex - 1));
  $('users-next').addEventListener('click', () => loadPage(pageIndex + 1));
  $('users-retry').addEventListener('click', () => loadPage(pageIndex));
}

/** Shows the first page of users. */
export function openUsers() {
  cursors = [null];
  return loadPage(0);
}

/** Forgets what the page showed, e.g. when the admin logs out. */
export function clearUsers() {
  seq += 1;
  cursors = [null];
  pageIndex = 0;
  next = null;
  $('users-body').replaceChildren();
  $('users-problem').hidden = true;
  $('users-loading').hidden = true;
  $('users-page-info').textContent = '';
}

async function loadPage(index) {
  if (index < 0 || index >= cursors.length) return;
  const mine = ++seq;
  $('users-problem').hidden = true;
  $('users-loading').hidden = false;
  $('users-prev').disabled = true;
  $('users-next').disabled = true;
  try {
    const page = await callApi((token) => api.listUsers(token, { limit: PAGE_SIZE, cursor: cursors[index] }));
    if (mine !== seq) return;
    pageIndex = index;
    next = page.next_cursor || null;
    cursors = cursors.slice(0, index + 1);
    if (next) cursors.push(next);
    $('users-body').replaceChildren(...page.items.map(userRow));
    $('users-page-info').textContent = `Page ${index + 1}`;
  } catch (err) {
    if (mine !== seq || err.handled) return;
    $('users-problem-text').textContent = `Could not load the users. ${err.message}`;
    $('users-problem').hidden = false;
  } finally {
    if (mine === seq) {
      $('users-loading').hidden = true;
      $('users-prev').disabled = pageIndex === 0;
      $('users-next').disabled = !next;
    }
  }
}

function cell(label, content, className = '') {
  const td = document.createElement('td');
  td.dataset.label = label; // shown by CSS as a heading when rows stack on narrow screens
  if (className) td.className = className;
  td.append(content);
  return td;
}

function userRow(user) {
  const tr = document.createElement('tr');
  tr.dataset.userId = user.id;
  const roles = Array.isArray(user.roles) ? user.roles.join(', ') : '';
  const created = new Date(user.created_at).toLocaleDateString([], { dateStyle: 'medium' });
  tr.append(
    cell('Username', user.username, 'name'),
    cell('Roles', roles),
    cell('Created', created),
    cell('Status', user.disabled ? 'Disabled' : 'Active', 'status'),
    cell('Actions', actions(user, tr), 'actions'),
  );
  return tr;
}

function actions(user, tr) {
  const box = document.createElement('div');
  box.className = 'row-actions';
  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.className = user.disabled ? 'button button-secondary' : 'button button-danger-outline';
  toggle.textContent = user.disabled ? 'Enable' : 'Disable';
  toggle.setAttribute('aria-label', `${toggle.textContent} ${user.username}`);
  toggle.addEventListener('click', () => onToggle(toggle, user, tr));
  const end = document.createElement('button');
  end.type = 'button';
  end.className = 'button button-secondary';
  end.textContent = 'End sessions';
  end.setAttribute('aria-label', `End the sessions of ${user.username}`);
  end.addEventListener('click', () => onEndSessions(end, user));
  box.append(toggle, end);
  return box;
}

async function onToggle(button, user, tr) {
  const disabled = !user.disabled;
  const done = setBusy(button, disabled ? 'Disabling…' : 'Enabling…');
  let changed;
  try {
    changed = await callApi((token) => api.setUserDisabled(token, user.id, disabled));
  } catch (err) {
    done();
    if (!err.handled) toast(`${user.username} was not changed. ${err.message}`, 'error');
    return;
  }
  const row = userRow(changed);
  tr.replaceWith(row);
  flash(row);
  row.querySelector('.row-actions button').focus();
  toast(disabled
    ? `Disabled ${changed.username}: every session ended, and signing in is refused.`
    : `Enabled ${changed.username}: signing in works again.`);
}

async function onEndSessions(button, user) {
  const done = setBusy(button, 'Ending…');
  try {
    await callApi((token) => api.endUserSessions(token, user.id));
  } catch (err) {
    done();
    if (!err.handled) toast(`Could not end the sessions of ${user.username}. ${err.message}`, 'error');
    return;
  }
  done();
  const self = currentUser() && currentUser().id === user.id;
  toast(self
    ? 'Ended your sessions, this one included.'
    : `Ended every session of ${user.username}. They are signed out at their next request.`);
}
