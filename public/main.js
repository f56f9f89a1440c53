// The browser client's entry point (plain ES2020 modules, no dependencies, no build step):
// gives the session its lost-session handler, wires every view, and shows the first one.

import { hasStoredSession, initSession, restore } from './session.js';
import { $, announce, focusElement } from './ui.js';
import { wireAuthForms } from './view-auth.js';
import { resetIfEditing, startEdit, wirePersonForm } from './view-person-form.js';
import { wirePersonsList } from './view-persons.js';
import { enterApp, showLoggedOut, wireShell } from './view-shell.js';

// The session is over: show the login form with the reason, and put the focus there.
function onSessionLost(reason) {
  showLoggedOut();
  announce(reason, 'error');
  focusElement($('login-username'));
}

// A refresh token in this tab's sessionStorage means a reload: restore the session from it.
async function restoreSession() {
  try {
    await restore();
    await enterApp();
  } catch (err) {
    if (err.handled) return;
    showLoggedOut();
    announce(`Could not restore your session. ${err.message}`, 'error');
  }
}

function start() {
  initSession({ onSessionLost });
  wireAuthForms();
  wireShell();
  wirePersonsList({ onEdit: startEdit, onDeleted: (person) => resetIfEditing(person.id) });
  wirePersonForm();
  if (hasStoredSession()) {
    restoreSession();
  } else {
    showLoggedOut();
  }
}

start();
