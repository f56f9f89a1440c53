// The account page (#/account): who is logged in, the email address (view-email.js), changing the password, the live sessions,
// the apps signed in to (view-consents.js), recent activity and deleting the account.

import * as api from './api.js';
import { clearFormErrors, failLocally, refreshCounters, reportFormError } from './forms.js';
import { passwordProblem } from './policy.js';
import { callApi, currentUser, endLocally } from './session.js';
import { $, focusElement, holdOff, setBusy, toast } from './ui.js';
import { clearActivity, openActivity, wireActivity } from './view-activity.js';
import { clearConsents, openConsents, wireConsents } from './view-consents.js';
import { showEmail } from './view-email.js';
import { clearSessions, openSessions, wireSessions } from './view-sessions.js';

let onAccountDeleted = () => {};

/** Wires both forms and the activity list; `onAccountDeleted(message)` shows the login form. */
export function wireAccount(handlers) {
  onAccountDeleted = handlers.onAccountDeleted;
  $('password-form').addEventListener('submit', onPasswordSubmit);
  $('delete-account-form').addEventListener('submit', onDeleteSubmit);
  wireActivity();
  wireSessions();
  wireConsents();
}

/** Shows the account page's forms empty and loads the sessions, the apps and the recent activity. */
export function openAccount() {
  resetForms();
  showEmail();
  return Promise.all([openSessions(), openConsents(), openActivity()]);
}

/** Forgets everything the page showed, e.g. when the person logs out. */
export function clearAccount() {
  resetForms();
  clearSessions();
  clearConsents();
  clearActivity();
}

function resetForms() {
  for (const id of ['password-form', 'delete-account-form']) {
    $(id).reset();
    clearFormErrors($(id));
  }
  refreshCounters();
}

/* ---------- changing the password ---------- */

function validatePasswordChange(current, next, confirm) {
  const problems = [];
  if (!current) problems.push({ field: 'current_password', message: 'Enter your current password.' });
  const problem = next ? passwordProblem(next, currentUser().username) : 'Choose a new password.';
  if (problem) problems.push({ field: 'new_password', message: problem });
  if (!confirm) {
    problems.push({ field: 'confirm', message: 'Type the new password a second time.' });
  } else if (next.normalize('NFC') !== confirm.normalize('NFC')) {
    problems.push({ field: 'confirm', message: 'The passwords do not match. Type the same password in both fields.' });
  }
  return problems;
}

async function onPasswordSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const current = form.elements.current_password.value;
  const next = form.elements.new_password.value;
  const problems = validatePasswordChange(current, next, form.elements.confirm.value);
  if (problems.length) { failLocally(form, problems); return; }

  const submit = $('password-submit');
  const done = setBusy(submit, 'Changing password…');
  try {
    await callApi((token) => api.changePassword(token, current, next));
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    reportFormError(form, err, { fallbackField: 'current_password' });
    return;
  }
  done();
  resetForms();
  toast('Password changed. Your other sessions have ended.');
  focusElement($('password-heading'));
  await Promise.all([openSessions(), openActivity()]); // the others ended; the change is the newest event
}

/* ---------- deleting the account ---------- */

async function onDeleteSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const password = form.elements.current_password.value;
  if (!password) {
    failLocally(form, [{ field: 'current_password', message: 'Enter your current password to delete the account.' }]);
    return;
  }
  const submit = $('delete-account-submit');
  const done = setBusy(submit, 'Deleting account…');
  try {
    await callApi((token) => api.deleteAccount(token, password));
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    reportFormError(form, err, { fallbackField: 'current_password' });
    return;
  }
  done();
  const { username } = currentUser();
  await endLocally(); // the service already ended every session of the account
  onAccountDeleted(`The account ${username} was deleted, with its sessions and its activity.`);
}
