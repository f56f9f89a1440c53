// The page frame: which view shows (starting, logged out, the recovery pages, the persons
// page, the account page, the security page, the admins' users page, the email link's page) for the route in the address bar, the header's session bar with its navigation and
// logout button, and entering or leaving the logged-in view.

import { currentRoute, go } from './router.js';
import { currentUser, isAdmin, loadUser, logOut } from './session.js';
import { $, announce, focusElement, setBusy } from './ui.js';
import { clearAccount, openAccount } from './view-account.js';
import { openVerifyLink } from './view-email.js';
import { clearLoginCode } from './view-login-code.js';
import { resetPersonForm } from './view-person-form.js';
import { clearPersons, openPersons } from './view-persons.js';
import { openRecovery } from './view-recovery.js';
import { clearSecurity, openSecurity } from './view-security.js';
import { closeStepUp } from './view-step-up.js';
import { clearUsers, openUsers } from './view-users.js';

const PAGES = {
  persons: 'persons-page',
  account: 'account-page',
  security: 'security-page',
  users: 'users-page',
  'verify-email': 'verify-email-page',
};
const TITLES = {
  persons: 'Persons', account: 'Your account', security: 'Security', users: 'Users', 'verify-email': 'Confirm your email',
};
const OPEN = {
  persons: (route) => openPersons(route.params),
  account: () => openAccount(),
  security: () => openSecurity(),
  users: () => openUsers(),
  'verify-email': (route) => openVerifyLink(route),
};
// Pages for whoever holds the link or forgot the password, logged in or not.
const RECOVERY = new Set(['forgot', 'reset']);

/** Wires the logout button. */
export function wireShell() {
  $('logout-button').addEventListener('click', onLogOut);
}

/** Loads the account, shows the logged-in view on the route asked for, focus on its heading. */
export async function enterApp() {
  await loadUser();
  showLoggedIn();
  const route = currentRoute();
  if (route.name === 'login' || route.name === 'forgot') go('persons', {}, { replace: true });
  await showRoute(currentRoute(), { focus: true });
}

/** Shows the view of a route (Back, Forward, a typed URL); logged out, the login form. */
export function showRoute(route, { focus = false } = {}) {
  if (RECOVERY.has(route.name) && !(route.name === 'forgot' && currentUser())) {
    if ($('recovery-view').hidden) announce(''); // "You are logged out" is old news here
    showView('recovery');
    openRecovery(route);
    return Promise.resolve();
  }
  if (!currentUser()) {
    showLoggedOut();
    if (route.name === 'verify-email') {
      // The code is the account's: sign in first, then the page it names shows (the address is kept).
      announce('Log in to confirm your email address; the confirmation page shows once you are logged in.');
    }
    return Promise.resolve();
  }
  if (route.name === 'login' || route.name === 'forgot' || (route.name === 'users' && !isAdmin())) {
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
  closeStepUp();
  clearLoginCode();
  resetPersonForm();
  clearPersons();
  clearAccount();
  clearSecurity();
  clearUsers();
  showView('auth');
  document.title = 'Log in · tokenauth';
}

function showView(name) {
  $('boot-view').hidden = name !== 'boot';
  $('auth-view').hidden = name !== 'auth';
  $('recovery-view').hidden = name !== 'recovery';
  $('app-view').hidden = name !== 'app';
  $('session-bar').hidden = name !== 'app';
}

function showPage(name) {
  for (const [page, id] of Object.entries(PAGES)) {
    $(id).hidden = page !== name;
    const nav = $(`nav-${page}`); // the email link's page has no place in the header
    if (nav && page === name) nav.setAttribute('aria-current', 'page');
    else if (nav) nav.removeAttribute('aria-current');
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
