// The account's email address: the account page's section (the address, whether it is
// confirmed, "Enter the code", "Change email") and the page #/verify-email?code=... that the
// verification mail links to, which submits the code only when its button is pressed.

import * as api from './api.js';
import { clearFormErrors, failLocally, reportFormError } from './forms.js';
import { go } from './router.js';
import { callApi, currentUser, loadUser } from './session.js';
import { $, focusElement, holdOff, setBusy, toast } from './ui.js';

const WRONG_CODE = 'That is not the code in the latest mail. Check it, or change the address to get a new code.';
let onVerifiedFromLink = () => {};

/** Wires the three forms; `onVerifiedFromLink()` shows the account page after the link's code. */
export function wireEmail(handlers) {
  onVerifiedFromLink = handlers.onVerifiedFromLink;
  $('verify-form').addEventListener('submit', (event) => onVerifySubmit(event, $('verify-submit'), afterVerified));
  $('verify-link-form').addEventListener('submit', (event) => onVerifySubmit(event, $('verify-link-submit'), afterLinkVerified));
  $('email-form').addEventListener('submit', onChangeSubmit);
}

/** Shows the account's address and the forms that fit it, empty. */
export function showEmail() {
  const user = currentUser();
  const email = user && user.email;
  $('email-state').textContent = !email
    ? 'No email address: add one to be able to reset a forgotten password.'
    : `${email}: ${user.email_verified ? 'confirmed. A forgotten password can be reset through it.' : 'not confirmed yet. Enter the code mailed to it.'}`;
  $('verify-form').hidden = !email || Boolean(user.email_verified);
  $('email-form-heading').textContent = email ? 'Change email' : 'Add an email address';
  $('email-submit').textContent = email ? 'Change email' : 'Add email';
  for (const id of ['verify-form', 'email-form']) {
    $(id).reset();
    clearFormErrors($(id));
  }
}

/** Shows the link's page with the code from the address bar, not yet submitted. */
export function openVerifyLink(route) {
  const form = $('verify-link-form');
  form.reset();
  clearFormErrors(form);
  form.elements.code.value = route.params.get('code') || '';
}

/* ---------- entering the code ---------- */

async function onVerifySubmit(event, submit, after) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const code = form.elements.code.value.trim();
  if (!code) { failLocally(form, [{ field: 'code', message: 'Enter the code from the mail.' }]); return; }
  const done = setBusy(submit, 'Confirming…');
  try {
    await callApi((token) => api.verifyEmail(token, code));
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    if (err.status === 422) Object.assign(err, { fields: [{ field: 'code', message: WRONG_CODE }] });
    reportFormError(form, err, { fallbackField: 'code' });
    return;
  }
  done();
  await loadUser();
  await after();
}

async function afterVerified() {
  showEmail();
  toast(`Your address ${currentUser().email} is confirmed.`);
  focusElement($('email-heading'));
}

async function afterLinkVerified() {
  go('account');
  await onVerifiedFromLink();
  toast(`Your address ${currentUser().email} is confirmed.`);
}

/* ---------- adding or changing the address ---------- */

async function onChangeSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const email = form.elements.email.value.trim();
  const password = form.elements.current_password.value;
  const problems = [];
  if (!email) problems.push({ field: 'email', message: 'Enter the new email address.' });
  if (!password) problems.push({ field: 'current_password', message: 'Enter your current password.' });
  if (problems.length) { failLocally(form, problems); return; }

  const submit = $('email-submit');
  const done = setBusy(submit, 'Saving…');
  try {
    await callApi((token) => api.changeEmail(token, email, password));
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    if (err.status === 409) Object.assign(err, { fields: [{ field: 'email', message: 'That address belongs to another account.' }] });
    reportFormError(form, err, { fallbackField: 'current_password' });
    return;
  }
  done();
  await loadUser();
  showEmail();
  toast(`A code is on its way to ${email}. Enter it here to confirm the address.`);
  focusElement($('verify-code'));
}
