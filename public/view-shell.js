// The page frame: which view shows (starting, logged out, logged in), the header's session
// bar with its logout button, and entering or leaving the logged-in view.

import { currentUser, isAdmin, loadUser, logOut } from './session.js';
import { $, announce, focusElement, setBusy } from './ui.js';
import { resetPersonForm } from './view-person-form.js';
import { clearPersons, loadPersons, resetPaging } from './view-persons.js';

/** Wires the logout button. */
export function wireShell() {
  $('logout-button').addEventListener('click', onLogOut);
}

/** Loads the account, shows the logged-in view with focus on its heading, and the persons. */
export async function enterApp() {
  await loadUser();
  showLoggedIn();
  focusElement($('app-heading'));
  resetPaging();
  await loadPersons();
}

/** Shows the logged-out view, with nothing left of the logged-in one. */
export function showLoggedOut() {
  resetPersonForm();
  clearPersons();
  showView('auth');
  document.title = 'Log in · tokenauth';
}

function showView(name) {
  $('boot-view').hidden = name !== 'boot';
  $('auth-view').hidden = name !== 'auth';
  $('app-view').hidden = name !== 'app';
  $('session-bar').hidden = name !== 'app';
}

function showLoggedIn() {
  const { username, roles: listed } = currentUser();
  const roles = Array.isArray(listed) ? listed : [];
  $('session-user').textContent = username;
  $('session-roles').replaceChildren(...roles.map(roleBadge));
  $('app-heading').textContent = `Welcome, ${username}`;
  $('user-summary').textContent = roles.length
    ? `You are logged in as ${username} with the role${roles.length > 1 ? 's' : ''} ${roles.join(', ')}.`
    : `You are logged in as ${username}, with no special roles.`;
  document.querySelectorAll('[data-admin-only]').forEach((el) => { el.hidden = !isAdmin(); });
  showView('app');
  document.title = `${username} · tokenauth`;
}

function roleBadge(role) {
  const badge = document.createElement('span');
  badge.className = 'role';
  badge.textContent = role;
  return badge;
}

async function onLogOut() {
  const done = setBusy($('logout-button'), 'Logging out…');
  const unreachable = await logOut();
  done();
  showLoggedOut();
  announce(unreachable
    ? 'You are logged out in this tab, but the service could not be reached to end the session; it will expire on its own.'
    : 'You are logged out.', unreachable ? 'error' : 'info');
  focusElement($('auth-heading'));
}
