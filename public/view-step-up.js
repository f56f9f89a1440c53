// "Confirm it is you" (step-up, RFC 9470): a route answered 401 insufficient_user_authentication,
// so this dialog asks for the password (and the second factor's code when the route asks for
// acr aal2, or the service asks for it after the password). It logs in again with this
// browser's session cookie, which re-authenticates that session rather than opening another;
// session.js then retries the refused call once.

import { ApiError, sentence } from './api.js';
import { factorInput, readFactorCode, recoveryCodesLeft, resetFactorCode, tryAgainHint, wireFactorCode } from './factor-code.js';
import { clearFormErrors, failLocally, formAlert } from './forms.js';
import { passkeyFailure } from './passkeys.js';
import { currentUser, logIn, logInSecondStep, logInSecondStepWithPasskey } from './session.js';
import { $, focusElement, holdOff, setBusy, toast } from './ui.js';

const STARTED_OVER = 'That confirmation was not finished in time. Enter your password again.';

// The confirmation in progress: its promise's resolve, the mfa_token once the password was
// right, and where the focus was.
let pending = null;

/** Wires the dialog's form, its code switch, Cancel and Escape. */
export function wireStepUp() {
  const form = $('step-up-form');
  wireFactorCode(form);
  form.addEventListener('submit', onSubmit);
  $('step-up-cancel').addEventListener('click', () => finish(false));
  $('step-up-passkey').addEventListener('click', onPasskey);
  // Escape closes a modal dialog by itself: that is a Cancel too.
  $('step-up-dialog').addEventListener('close', () => finish(false));
}

/** Asks the person to sign in again; resolves true once they did, false when they cancelled. */
export function confirmItIsYou(challenge) {
  if (pending) finish(false);
  const needsFactor = /\baal2\b/.test((challenge && challenge.acr_values) || '');
  return new Promise((resolve) => {
    pending = { resolve, mfaToken: null, returnFocus: document.activeElement };
    const form = $('step-up-form');
    form.reset();
    clearFormErrors(form);
    resetFactorCode(form);
    $('step-up-password-field').hidden = false;
    $('step-up-factor').hidden = !needsFactor;
    $('step-up-passkey').hidden = true;
    $('step-up-submit').hidden = false;
    form.querySelector('[data-factor-switch]').parentElement.hidden = false;
    $('step-up-lead').textContent = leadText(challenge, needsFactor);
    $('step-up-dialog').showModal();
    focusElement(form.elements.password);
  });
}

/** Closes the dialog unconfirmed, e.g. when the session ends while it is open. */
export function closeStepUp() {
  finish(false);
}

function leadText(challenge, needsFactor) {
  const seconds = Number(challenge && challenge.max_age);
  const recent = seconds > 0 ? `a sign-in within the last ${humanSpan(seconds)}` : 'a recent sign-in';
  return needsFactor
    ? `This action needs ${recent} with your second factor. Enter your password and the code from your authenticator app.`
    : `This action needs ${recent}. Enter your password to go on.`;
}

function humanSpan(seconds) {
  if (seconds < 120) return `${seconds} seconds`;
  const minutes = Math.round(seconds / 60);
  return minutes < 120 ? `${minutes} minutes` : `${Math.round(minutes / 60)} hours`;
}

function finish(confirmed) {
  if (!pending) return;
  const { resolve, returnFocus } = pending;
  pending = null;
  if ($('step-up-dialog').open) $('step-up-dialog').close();
  focusElement(returnFocus);
  resolve(confirmed);
}

async function onSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const mine = pending;
  if (!mine) return;
  clearFormErrors(form);
  const factorShown = !$('step-up-factor').hidden;
  const password = form.elements.password.value; // never trimmed: spaces count
  // Before the password is accepted an empty code waits: the account may have a passkey only.
  const typed = factorShown && factorInput(form).value.trim() !== '';
  const code = factorShown && (typed || mine.mfaToken) ? readFactorCode(form) : null;
  const problems = [];
  if (!mine.mfaToken && !password) problems.push({ field: 'password', message: 'Enter your password.' });
  if (code && code.problem) problems.push(code.problem);
  if (problems.length) { failLocally(form, problems); return; }

  const submit = $('step-up-submit');
  const done = setBusy(submit, 'Confirming…');
  try {
    if (!mine.mfaToken) {
      const secondStep = await logIn(currentUser().username, password);
      if (!secondStep) { done(); finish(true); return; }
      mine.mfaToken = secondStep.mfaToken;
      passwordAccepted(form);
      if (!code) { done(); askForCode(form, secondStep.methods); return; }
    }
    const extras = await logInSecondStep(mine.mfaToken, code.proof, code.value);
    done();
    if (typeof extras.recovery_codes_left === 'number') toast(recoveryCodesLeft(extras.recovery_codes_left));
    finish(true);
  } catch (err) {
    done();
    if (mine !== pending) return;
    refused(form, err, code);
    if (err.status === 429) holdOff(submit, err.retryAfter);
  }
}

// The password was right: only the code is left to give.
function passwordAccepted(form) {
  form.elements.password.value = '';
  $('step-up-password-field').hidden = true;
  $('step-up-lead').textContent = 'Your password was right. Now enter the code from your authenticator app.';
}

function askForCode(form, methods) {
  resetFactorCode(form, methods);
  const codes = methods.some((m) => m === 'otp' || m === 'recovery_code');
  if (!codes) for (const field of form.querySelectorAll('[data-factor]')) field.hidden = true;
  form.querySelector('[data-factor-switch]').parentElement.hidden = !codes;
  $('step-up-submit').hidden = !codes;
  $('step-up-passkey').hidden = !methods.includes('passkey');
  if (!codes) $('step-up-lead').textContent = 'Your password was right. Now use your passkey.';
  $('step-up-factor').hidden = false;
  focusElement(codes ? factorInput(form) : $('step-up-passkey'));
}

// The second step with one of the account's passkeys (options bound to this login's mfa_token).
async function onPasskey() {
  const mine = pending;
  if (!mine || !mine.mfaToken) return;
  const form = $('step-up-form');
  clearFormErrors(form);
  const button = $('step-up-passkey');
  const done = setBusy(button, 'Waiting for your passkey…');
  try {
    await logInSecondStepWithPasskey(mine.mfaToken);
    done();
    finish(true);
  } catch (err) {
    done();
    if (mine !== pending) return;
    if (err instanceof ApiError) refused(form, err, null);
    else formAlert(form, passkeyFailure(err));
    if (err.status === 429) holdOff(button, err.retryAfter);
  }
}

function refused(form, err, code) {
  if (err.handled) return;
  const wrong = err.status === 400 && err.code === 'invalid_grant';
  if (wrong && !pending.mfaToken) {
    // The password step: the password (the username is this session's own).
    form.elements.password.value = '';
    failLocally(form, [{ field: 'password', message: 'That is not your password.' }]);
    return;
  }
  if (wrong && !/incorrect/i.test(err.said)) {
    // The attempt expired or can no longer finish: the password again.
    pending.mfaToken = null;
    $('step-up-password-field').hidden = false;
    resetFactorCode(form);
    formAlert(form, STARTED_OVER);
    focusElement(form.elements.password);
    return;
  }
  if (wrong && code) {
    const input = form.elements.namedItem(code.proof);
    input.value = '';
    input.setAttribute('aria-invalid', 'true');
    formAlert(form, `${sentence(err.said)} ${tryAgainHint(code.proof)}`);
    focusElement(input);
    return;
  }
  formAlert(form, err.message);
  focusElement(form.querySelector('[data-form-alert]'));
}
