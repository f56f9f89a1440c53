// The page frame: which view shows (starting, logged out, the persons page, the account
// page, the admins' users page) for the route in the address bar, the header's session bar with its navigation and
// logout button, and entering or leaving the logged-in view.

import { currentRoute, go } from './router.js';
import { currentUser, isAdmin, loadUser, logOut } from './session.js';
import { $, announce, focusElement, setBusy } from './ui.js';
import { clearAccount, openAccount } from './view-account.js';
import { resetPersonForm } from './view-person-form.js';
import { clearPersons, openPersons } from './view-persons.js';
import { clearUsers, openUsers } from './view-users.js';

const PAGES = { persons: 'persons-page', account: 'account-page', users: 'users-page' };
const TITLES = { persons: 'Persons', account: 'Your account', users: 'Users' };
const OPEN = { persons: (route) => openPersons(route.params), account: () => openAccount(), users: () => openUsers() };

/** Wires the logout button. */
export function wireShell() {
  $('logout-button').addEventListener('click', onLogOut);
}

/** Loads the account, shows the logged-in view on the route asked for, focus on its heading. */
export async function enterApp() {
  await loadUser();
  showLoggedIn();
  const route = currentRoute();
  if (route.name === 'login') go('persons', {}, { replace: true });
  await showRoute(currentRoute(), { focus: true });
}

/** Shows the view of a route (Back, Forward, a typed URL); logged out, the login form. */
export function showRoute(route, { focus = false } = {}) {
  if (!currentUser()) {
    showLoggedOut();
    return Promise.resolve();
  }
  if (route.name === 'login' || (route.name === 'users' && !isAdmin())) {
    go('persons', {}, { replace: true });
    return showRoute(currentRoute(), { focus });
  }
  const name = route.name in PAGES ? route.name : 'persons';
  const switched = $(PAGES[name]).hidden;
  showPage(name);
  if (switched && !focus) announce(''); // news of the other page is old news here
  if (focus || switched) focusElement($(`${name}-heading`));
  return OPEN[name](route);
}

/** Shows the logged-out view, with nothing left of the logged-in one. */
export function showLoggedOut() {
  resetPersonForm();
  clearPersons();
  clearAccount();
  clearUsers();
  showView('auth');
  document.title = 'Log in · tokenauth';
}

function showView(name) {
  $('boot-view').hidden = name !== 'boot';
  $('auth-view').hidden = name !== 'auth';
  $('app-view').hidden = name !== 'app';
  $('session-bar').hidden = name !== 'app';
}

function showPage(name) {
  for (const [page, id] of Object.entries(PAGES)) {
    $(id).hidden = page !== name;
    if (page === name) $(`nav-${page}`).setAttribute('aria-current', 'page');
    else $(`nav-${page}`).removeAttribute('aria-current');
  }
  const { username } = currentUser();
  document.title = `${TITLES[name]} · ${username} · tokenauth`;
}

function showLoggedIn() {
  const { username, roles: listed } = currentUser();
  const roles = Array.isArray(listed) ? listed : [];
  $('session-user').textContent = username;
  $('session-roles').replaceChildren(...roles.map(roleBadge));
  $('user-summary').textContent = roles.length
    ? `You are logged in as ${username} with the role${roles.length > 1 ? 's' : ''} ${roles.join(', ')}.`
    : `You are logged in as ${username}, with no special roles.`;
  $('persons-lead').textContent = isAdmin()
    ? 'The people in the shared list. As an administrator you can add, edit and delete them.'
    : 'The people in the shared list. Administrators keep it up to date; you can browse it.';
  document.querySelectorAll('[data-admin-only]').forEach((el) => { el.hidden = !isAdmin(); });
  showView('app');
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
  go('login');
  announce(unreachable
    ? 'You are logged out in this tab, but the service could not be reached to end the session; it will expire on its own.'
    : 'You are logged out.', unreachable ? 'error' : 'info');
  focusElement($('auth-heading'));
}
