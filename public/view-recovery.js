// The logged-out recovery pages: #/forgot asks for a reset mail, #/reset?token=... (the link
// in that mail) sets a new password. Opening the link consumes nothing: only the form's POST
// uses the token, so a mail scanner that fetches the link leaves it working.

import * as api from './api.js';
import { clearFormErrors, failLocally, formAlert, refreshCounters, reportFormError } from './forms.js';
import { passwordProblem } from './policy.js';
import { $, focusElement, holdOff, setBusy } from './ui.js';

/** The one answer to a reset request, whether or not the account exists or has an address. */
export const RESET_REQUESTED = 'If an account has a verified address, a mail is on its way to it with a link '
  + 'to set a new password. It can take a few minutes; the link works once.';
const BAD_LINK = 'This link has expired, was already used or is not a reset link. Ask for a new one below.';
const NO_TOKEN = 'This page needs the link from the reset mail. Open the link from the mail, or ask for a new one below.';

let onPasswordReset = () => {};
let token = '';

/** Wires both forms; `onPasswordReset()` shows the login form after a new password was set. */
export function wireRecovery(handlers) {
  onPasswordReset = handlers.onPasswordReset;
  $('forgot-form').addEventListener('submit', onForgotSubmit);
  $('reset-form').addEventListener('submit', onResetSubmit);
}

/** Shows the page of the route ('forgot' or 'reset'), its form empty. */
export function openRecovery(route) {
  $('forgot-page').hidden = route.name !== 'forgot';
  $('reset-page').hidden = route.name !== 'reset';
  for (const id of ['forgot-form', 'reset-form']) {
    $(id).reset();
    clearFormErrors($(id));
  }
  $('forgot-done').textContent = '';
  refreshCounters();
  token = route.name === 'reset' ? (route.params.get('token') || '') : '';
  if (route.name === 'reset' && !token) formAlert($('reset-form'), NO_TOKEN);
  document.title = route.name === 'reset' ? 'Set a new password · tokenauth' : 'Forgot password · tokenauth';
  focusElement($(`${route.name}-heading`));
}

/* ---------- asking for a reset mail ---------- */

async function onForgotSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  $('forgot-done').textContent = '';
  const name = form.elements.username.value.trim();
  if (!name) { failLocally(form, [{ field: 'username', message: 'Enter your username or email address.' }]); return; }

  const submit = $('forgot-submit');
  const done = setBusy(submit, 'Sending…');
  try {
    await api.requestPasswordReset(name);
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    reportFormError(form, err, { fallbackField: 'username' });
    return;
  }
  done();
  $('forgot-done').textContent = RESET_REQUESTED;
}

/* ---------- setting the new password ---------- */

function validateReset(next, confirm) {
  const problems = [];
  const problem = next ? passwordProblem(next) : 'Choose a new password.';
  if (problem) problems.push({ field: 'new_password', message: problem });
  if (!confirm) {
    problems.push({ field: 'confirm', message: 'Type the new password a second time.' });
  } else if (next.normalize('NFC') !== confirm.normalize('NFC')) {
    problems.push({ field: 'confirm', message: 'The passwords do not match. Type the same password in both fields.' });
  }
  return problems;
}

async function onResetSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  if (!token) { formAlert(form, NO_TOKEN); return; }
  const next = form.elements.new_password.value;
  const problems = validateReset(next, form.elements.confirm.value);
  if (problems.length) { failLocally(form, problems); return; }

  const submit = $('reset-submit');
  const done = setBusy(submit, 'Setting the password…');
  try {
    await api.confirmPasswordReset(token, next);
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    if (err.status === 400) { formAlert(form, BAD_LINK); focusElement(form.querySelector('[data-form-alert]')); return; }
    reportFormError(form, err, { fallbackField: 'new_password' });
    return;
  }
  done();
  token = '';
  form.reset();
  refreshCounters();
  onPasswordReset();
}
