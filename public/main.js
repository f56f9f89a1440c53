// The browser client's entry point (plain ES2020 modules, no dependencies, no build step):
// gives the session its lost-session handler, wires every view and the routes, and shows the
// first view.

import { showPolicy, wirePasswordHelpers } from './forms.js';
import { currentRoute, go, onRouteChange } from './router.js';
import { currentUser, endLocally, initSession, restore } from './session.js';
import { $, announce, focusElement } from './ui.js';
import { wireAccount } from './view-account.js';
import { wireAuthForms } from './view-auth.js';
import { wireEmail } from './view-email.js';
import { wireLoginCode } from './view-login-code.js';
import { wirePasskeys } from './view-passkeys.js';
import { startEdit, wirePersonForm } from './view-person-form.js';
import { wirePersonsList } from './view-persons.js';
import { wireRecovery } from './view-recovery.js';
import { wireSecurity } from './view-security.js';
import { enterApp, showLoggedOut, showRoute, wireShell } from './view-shell.js';
import { confirmItIsYou, wireStepUp } from './view-step-up.js';
import { wireUsers } from './view-users.js';

const AUTO_RETRY_MAX_S = 30;

// The session is over: show the login form with the reason, and put the focus there.
function onSessionLost(reason) {
  showLoggedOut();
  announce(reason, 'error');
  focusElement($('login-username'));
}

// The account is gone: the login form, with what happened.
function onAccountDeleted(message) {
  showLoggedOut();
  go('login');
  announce(message);
  focusElement($('auth-heading'));
}

// A new password was set from the mailed link: the service ended every session of the
// account (this tab's too, if it was the one logged in) and logged nobody in.
async function onPasswordReset() {
  if (currentUser()) await endLocally();
  showLoggedOut();
  go('login');
  announce('Your password was changed and every session of the account has ended. Log in with the new password.');
  focusElement($('login-username'));
}

// The code from the mail's link was accepted: the account page shows the confirmed address.
function onVerifiedFromLink() {
  return showRoute({ name: 'account', params: new URLSearchParams() }, { focus: true });
}

// The page cannot see the HttpOnly session cookie: one cookie refresh tells whether there is
// a session to restore (a reload, another tab, a bookmark) or the login form to show.
async function restoreSession() {
  try {
    if (!(await restore())) { await showRoute(currentRoute()); return; }
    await enterApp();
  } catch (err) {
    if (err.handled) return;
    showLoggedOut();
    if (err.status === 503 && err.retryAfter !== null && err.retryAfter <= AUTO_RETRY_MAX_S) {
      // The cookie is still kept: try again as the service asked, without a click.
      const wait = Math.max(1, err.retryAfter);
      announce(`Could not restore your session: the service is temporarily unavailable. Trying again in ${wait} seconds…`, 'error');
      window.setTimeout(() => { if (!currentUser()) restoreSession(); }, wait * 1000);
      return;
    }
    announce(`Could not restore your session. ${err.message}`, 'error');
  }
}

function start() {
  // A call refused for an old or one-factor sign-in asks the person, then is retried.
  initSession({ onSessionLost, onStepUp: confirmItIsYou });
  wirePasswordHelpers();
  showPolicy();
  wireAuthForms();
  wireLoginCode();
  wireStepUp();
  wireShell();
  wirePersonsList({ onEdit: startEdit });
  wirePersonForm();
  wireAccount({ onAccountDeleted });
  wireSecurity();
  wirePasskeys();
  wireUsers();
  wireRecovery({ onPasswordReset });
  wireEmail({ onVerifiedFromLink });
  onRouteChange((route) => showRoute(route));
  restoreSession();
}

start();
