// The logged-out view's two forms: logging in (with a second step, view-login-code.js, for an
// account with a second factor), and creating an account (which then logs in), with the rules
// of the service's policy checked before anything is sent.

import * as api from './api.js';
import { clearFormErrors, failLocally, formAlert, refreshCounters, reportFormError } from './forms.js';
import { currentPolicy, passwordProblem, usernameProblem } from './policy.js';
import { passkeyFailure } from './passkeys.js';
import { logIn, logInWithPasskey } from './session.js';
import { $, announce, focusElement, holdOff, setBusy } from './ui.js';
import { startLoginCode } from './view-login-code.js';
import { enterApp } from './view-shell.js';

/** Wires both forms. */
export function wireAuthForms() {
  $('login-form').addEventListener('submit', onLoginSubmit);
  $('login-passkey').addEventListener('click', onPasskeySignIn);
  $('register-form').addEventListener('submit', onRegisterSubmit);
}

// Logs in and shows the app; or, for an account with a second factor, shows the code step.
async function logInAndEnter(username, password) {
  const secondStep = await logIn(username, password);
  if (secondStep) startLoginCode(username, secondStep);
  else await enterApp();
}

/* ---------- logging in ---------- */

async function onLoginSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  announce('');
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value; // never trim a password: spaces count
  const problems = [];
  if (!username) problems.push({ field: 'username', message: 'Enter your username.' });
  if (!password) problems.push({ field: 'password', message: 'Enter your password.' });
  if (problems.length) { failLocally(form, problems); return; }

  const submit = form.querySelector('[type="submit"]');
  const done = setBusy(submit, 'Logging in…');
  try {
    await logInAndEnter(username, password);
    form.reset();
    done();
  } catch (err) {
    done();
    loginFailed(form, err);
    if (err.status === 429) holdOff(submit, err.retryAfter, form.elements.username);
  }
}

// A passwordless sign-in: the browser offers this site's passkeys (discoverable credentials).
async function onPasskeySignIn() {
  const form = $('login-form');
  clearFormErrors(form);
  announce('');
  const button = $('login-passkey');
  const done = setBusy(button, 'Waiting for your passkey…');
  try {
    await logInWithPasskey();
    await enterApp();
    form.reset();
  } catch (err) {
    if (err instanceof api.ApiError) {
      if (!err.handled) formAlert(form, err.status === 400 ? `${api.sentence(err.said)} Try again, or log in with your password.` : err.message);
      if (err.status === 429) holdOff(button, err.retryAfter);
    } else {
      formAlert(form, passkeyFailure(err));
    }
    focusElement(form.querySelector('[data-form-alert]'));
  } finally {
    done();
  }
}

function loginFailed(form, err) {
  if (err.status === 400 && err.code === 'invalid_grant') {
    form.elements.password.value = '';
    reportFormError(form, err, { fallbackField: 'password' });
  } else {
    reportFormError(form, err, { fallbackField: 'username' });
  }
}

/* ---------- creating an account ---------- */

function validateRegistration(username, password, confirm) {
  const problems = [];
  const nameProblem = username && usernameProblem(username);
  const passProblem = password && passwordProblem(password, username);
  if (!username) problems.push({ field: 'username', message: 'Choose a username.' });
  else if (nameProblem) problems.push({ field: 'username', message: nameProblem });
  if (!password) problems.push({ field: 'password', message: 'Choose a password.' });
  else if (passProblem) problems.push({ field: 'password', message: passProblem });
  if (!confirm) {
    problems.push({ field: 'confirm', message: 'Type the password a second time.' });
  } else if (password.normalize('NFC') !== confirm.normalize('NFC')) {
    // Compared after NFC, as the service compares them: "é" typed two ways is one password.
    problems.push({ field: 'confirm', message: 'The passwords do not match. Type the same password in both fields.' });
  }
  return problems;
}

async function onRegisterSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  announce('');
  const username = form.elements.username.value.trim();
  const password = form.elements.password.value;
  const confirm = form.elements.confirm.value;
  const email = form.elements.email.value.trim();
  const problems = validateRegistration(username, password, confirm);
  const rules = currentPolicy();
  if (!email && rules && rules.email_required) {
    // In the form's order, after the username, so that the focus goes to the first one.
    const at = problems.findIndex((p) => p.field !== 'username');
    const missing = { field: 'email', message: 'Enter your email address: this service needs one to let you reset a forgotten password.' };
    problems.splice(at < 0 ? problems.length : at, 0, missing);
  }
  if (problems.length) { failLocally(form, problems); return; }

  const submit = form.querySelector('[type="submit"]');
  const done = setBusy(submit, 'Creating account…');
  try {
    await api.register(username, password, email);
  } catch (err) {
    done();
    registrationFailed(form, err);
    if (err.status === 429) holdOff(submit, err.retryAfter);
    return;
  }
  try {
    await signInAfterRegistering(form, username, password, email);
  } finally {
    done();
  }
}

function registrationFailed(form, err) {
  if (err.status === 409) {
    // The service names the field; the sentence is the client's, friendlier than its message.
    const taken = err.fields.some((f) => f.field === 'email') ? 'email' : 'username';
    const fields = taken === 'email'
      ? [{ field: 'email', message: 'That address belongs to another account. Use another one, or leave it empty.' }]
      : [{ field: 'username', message: 'That username is taken. Choose another one.' }];
    const summary = taken === 'email' ? 'That email address is taken.' : 'That username is taken.';
    reportFormError(form, Object.assign(err, { fields }), { summary });
  } else {
    reportFormError(form, err, { fallbackField: 'username' });
  }
}

// The account exists: sign straight in with the same credentials.
async function signInAfterRegistering(form, username, password, email) {
  try {
    await logInAndEnter(username, password);
    form.reset();
    refreshCounters();
    announce(email
      ? `Account created. Welcome, ${username}. A code is on its way to ${email}: enter it on your account page.`
      : `Account created. Welcome, ${username}.`);
  } catch (err) {
    if (err.handled) return;
    form.reset();
    refreshCounters();
    $('login-username').value = username;
    formAlert($('login-form'), `Your account was created, but logging in failed: ${err.message}`);
    focusElement($('login-password'));
  }
}
