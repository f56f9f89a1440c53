// The login's second step, for an account with a second factor: POST /auth/session answered
// 403 mfa_required, so this form takes the login form's place and asks for the app's code (or a
// recovery code), sent with the attempt's mfa_token. A wrong code keeps the step; an attempt
// that expired (5 minutes) or can no longer finish goes back to the password.

import { ApiError, sentence } from './api.js';
import { factorInput, readFactorCode, recoveryCodesLeft, resetFactorCode, tryAgainHint, wireFactorCode } from './factor-code.js';
import { clearFormErrors, failLocally, formAlert } from './forms.js';
import { passkeyFailure } from './passkeys.js';
import { logInSecondStep, logInSecondStepWithPasskey } from './session.js';
import { $, announce, focusElement, holdOff, setBusy } from './ui.js';
import { enterApp } from './view-shell.js';

const STARTED_OVER = 'That login was not finished in time (it lasts 5 minutes) or can no longer be finished. '
  + 'Enter your password again.';

let attempt = null; // { username, mfaToken } of the login waiting for its second factor

/** Wires the code form, its switch and Back. */
export function wireLoginCode() {
  const form = $('login-code-form');
  wireFactorCode(form);
  form.addEventListener('submit', onCodeSubmit);
  $('login-code-back').addEventListener('click', () => backToPassword(''));
  $('login-code-passkey').addEventListener('click', onPasskey);
}

// Shows the typed-code fields only when the account has a code to type, and "Use a passkey"
// when it has a passkey.
function showMethods(form, methods) {
  const codes = methods.some((m) => m === 'otp' || m === 'recovery_code');
  if (!codes) for (const field of form.querySelectorAll('[data-factor]')) field.hidden = true;
  form.querySelector('[data-factor-switch]').parentElement.hidden = !codes;
  $('login-code-submit').hidden = !codes;
  $('login-code-passkey').hidden = !methods.includes('passkey');
  $('login-code-heading').textContent = codes ? 'Enter your code' : 'Use your passkey';
  $('login-code-lead').textContent = codes
    ? 'Your password was right. Your account also has a second factor: enter the code it shows.'
    : 'Your password was right. Your account also has a passkey: use it to finish logging in.';
}

async function onPasskey() {
  const form = $('login-code-form');
  clearFormErrors(form);
  if (!attempt) { backToPassword(STARTED_OVER); return; }
  const button = $('login-code-passkey');
  const done = setBusy(button, 'Waiting for your passkey…');
  try {
    await logInSecondStepWithPasskey(attempt.mfaToken);
    await enterApp();
  } catch (err) {
    done();
    if (err instanceof ApiError) {
      codeRefused(form, 'passkey', err);
      if (err.status === 429) holdOff(button, err.retryAfter);
    } else {
      formAlert(form, passkeyFailure(err));
      focusElement(button);
    }
    return;
  }
  done();
  clearLoginCode();
}

/** Shows the second step in place of the login form, focus on the code. */
export function startLoginCode(username, { mfaToken, methods }) {
  attempt = { username, mfaToken };
  const form = $('login-code-form');
  clearFormErrors(form);
  resetFactorCode(form, methods);
  showMethods(form, methods);
  $('login-form').hidden = true;
  form.hidden = false;
  announce('');
  focusElement($('login-code-submit').hidden ? $('login-code-passkey') : factorInput(form));
}

/** Back to the first step (also when the person logs out or the view is left). */
export function clearLoginCode() {
  attempt = null;
  const form = $('login-code-form');
  clearFormErrors(form);
  resetFactorCode(form);
  showMethods(form, ['otp', 'recovery_code']);
  form.hidden = true;
  $('login-form').hidden = false;
}

// The password again: the username is kept, the message says why.
function backToPassword(message) {
  const { username } = attempt || { username: '' };
  clearLoginCode();
  const login = $('login-form');
  login.elements.username.value = username;
  login.elements.password.value = '';
  formAlert(login, message);
  focusElement(username ? login.elements.password : login.elements.username);
}

async function onCodeSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const read = readFactorCode(form);
  if (read.problem) { failLocally(form, [read.problem]); return; }
  if (!attempt) { backToPassword(STARTED_OVER); return; }

  const submit = $('login-code-submit');
  const done = setBusy(submit, 'Logging in…');
  let extras;
  try {
    extras = await logInSecondStep(attempt.mfaToken, read.proof, read.value);
  } catch (err) {
    done();
    codeRefused(form, read.proof, err);
    if (err.status === 429) holdOff(submit, err.retryAfter);
    return;
  }
  try {
    await enterApp();
  } catch (err) {
    done();
    if (!err.handled) { formAlert(form, err.message); focusElement(form.querySelector('[data-form-alert]')); }
    return;
  }
  done();
  clearLoginCode();
  if (typeof extras.recovery_codes_left === 'number') announce(recoveryCodesLeft(extras.recovery_codes_left));
}

function codeRefused(form, proof, err) {
  if (err.handled) return;
  // "The otp is incorrect": the attempt is still good, try another code. Any other
  // invalid_grant (expired, used, password changed meanwhile) needs the password again.
  if (err.status === 400 && err.code === 'invalid_grant' && !/incorrect/i.test(err.said)) {
    backToPassword(STARTED_OVER);
    return;
  }
  const input = form.elements.namedItem(proof) || $('login-code-passkey');
  if (proof !== 'passkey') {
    input.value = '';
    input.setAttribute('aria-invalid', 'true');
  }
  const said = err.status === 400 && err.said ? `${sentence(err.said)} ${tryAgainHint(proof)}` : err.message;
  formAlert(form, said);
  focusElement(input);
}
