// The Security page (#/security): whether the authenticator app (TOTP) is on, setting it up
// (the QR code, the secret key as text, a code to confirm), the recovery codes left and a new
// set, turning the app off. Actions that need a fresh sign-in get the "Confirm it is you"
// dialog through callApi like every other call. Passkeys have their own section,
// #passkeys-section, which their own module fills through addSecuritySection.

import * as api from './api.js';
import { clearFormErrors, failLocally, reportFormError } from './forms.js';
import { callApi } from './session.js';
import { $, focusElement, holdOff, setBusy, toast } from './ui.js';
import { clearRecoveryCodes, recoveryCodesShown, showRecoveryCodes, wireRecoveryCodes } from './view-recovery-codes.js';

const WRONG_CODE = 'That is not the code the app shows for this key. Check that the app has the key above and that the phone\'s clock is right.';
const SECRET_GROUP = 4; // "ABCD EFGH ...": easier to type; apps ignore the spaces

let status = null; // GET /users/me/mfa
let seq = 0;
const sections = []; // other parts of the page (passkeys) shown from the same status

/**
 * Lets another part of the page show from each GET /users/me/mfa: `show(status)` after every
 * load, `clear()` when the page is left or the person logs out.
 */
export function addSecuritySection({ show, clear }) {
  sections.push({ show, clear });
}

/** Loads the status again (after another section changed a factor) and shows it. */
export function reloadSecurity() {
  return loadStatus();
}

/** Wires every button and form of the page. */
export function wireSecurity() {
  $('totp-start').addEventListener('click', onStart);
  $('totp-confirm-form').addEventListener('submit', onConfirm);
  $('totp-cancel').addEventListener('click', onCancelEnrolment);
  $('totp-remove').addEventListener('click', () => showRemoveQuestion(true));
  $('totp-remove-no').addEventListener('click', () => { showRemoveQuestion(false); focusElement($('totp-remove')); });
  $('totp-remove-yes').addEventListener('click', onRemove);
  $('recovery-codes-regenerate').addEventListener('click', onRegenerate);
  $('security-retry').addEventListener('click', () => loadStatus());
  wireRecoveryCodes({ onSaved: afterCodesSaved });
}

/** Shows the page from a fresh GET /users/me/mfa, with no enrolment or codes on it. */
export function openSecurity() {
  clearSecurity();
  return loadStatus();
}

/** Forgets what the page showed (the secret, the codes), e.g. when the person logs out. */
export function clearSecurity() {
  seq += 1;
  status = null;
  hideEnrolment();
  clearRecoveryCodes();
  showRemoveQuestion(false);
  $('security-problem').hidden = true;
  $('security-loading').hidden = true;
  $('totp-state').textContent = '';
  $('recovery-codes-state').textContent = '';
  for (const id of ['totp-start', 'totp-remove', 'recovery-codes-regenerate']) $(id).hidden = true;
  for (const section of sections) section.clear();
}

async function loadStatus() {
  const mine = ++seq;
  $('security-problem').hidden = true;
  $('security-loading').hidden = false;
  try {
    const answer = await callApi((token) => api.mfaStatus(token));
    if (mine !== seq) return;
    status = answer;
    render();
  } catch (err) {
    if (mine !== seq || err.handled) return;
    $('security-problem-text').textContent = `Could not load your security settings. ${err.message}`;
    $('security-problem').hidden = false;
  } finally {
    if (mine === seq) $('security-loading').hidden = true;
  }
}

function hasFactor() {
  return Boolean(status && (status.totp || (Array.isArray(status.passkeys) && status.passkeys.length)));
}

function render() {
  if (!status) return;
  const enrolling = !$('totp-enrol').hidden;
  $('totp-state').textContent = status.totp
    ? 'On: logging in asks for a code from your authenticator app after the password.'
    : 'Off: logging in needs your password only.';
  $('totp-start').hidden = status.totp || enrolling;
  $('totp-remove').hidden = !status.totp || !$('totp-remove-confirm').hidden;
  const left = status.recovery_codes_left;
  $('recovery-codes-state').textContent = hasFactor()
    ? `${left === 1 ? '1 code is' : `${left} codes are`} left.`
    : 'You get ten recovery codes when you set up an authenticator app.';
  $('recovery-codes-regenerate').hidden = !hasFactor() || recoveryCodesShown();
  for (const section of sections) section.show(status);
}

/* ---------- setting up the app ---------- */

async function onStart() {
  const button = $('totp-start');
  const done = setBusy(button, 'Starting…');
  let enrolment;
  try {
    enrolment = await callApi((token) => api.startTotp(token));
  } catch (err) {
    done();
    if (!err.handled) toast(`Could not start setting up the app. ${err.message}`, 'error');
    return;
  }
  done();
  showEnrolment(enrolment);
}

// The QR code is SVG from our own service, shown as an image from a data: URI (the page's CSP
// allows data: images): an <img> never runs script in it, and no inline SVG or style is needed.
function showEnrolment({ secret, qr_svg: qrSvg }) {
  clearRecoveryCodes();
  $('totp-qr').src = `data:image/svg+xml,${encodeURIComponent(qrSvg)}`;
  $('totp-secret').textContent = groups(secret);
  const form = $('totp-confirm-form');
  form.reset();
  clearFormErrors(form);
  $('totp-enrol').hidden = false;
  render();
  focusElement($('totp-enrol-heading'));
}

function groups(secret) {
  return secret.match(new RegExp(`.{1,${SECRET_GROUP}}`, 'g')).join(' ');
}

function hideEnrolment() {
  $('totp-enrol').hidden = true;
  $('totp-qr').removeAttribute('src');
  $('totp-secret').textContent = '';
  $('totp-confirm-form').reset();
  clearFormErrors($('totp-confirm-form'));
}

function onCancelEnrolment() {
  hideEnrolment();
  render();
  focusElement($('totp-start'));
}

async function onConfirm(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const code = form.elements.code.value.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(code)) {
    failLocally(form, [{ field: 'code', message: 'Enter the 6 digits the app shows now.' }]);
    return;
  }
  const submit = $('totp-confirm-submit');
  const done = setBusy(submit, 'Turning on…');
  let answer;
  try {
    answer = await callApi((token) => api.confirmTotp(token, code));
  } catch (err) {
    done();
    if (err.status === 429) holdOff(submit, err.retryAfter);
    if (err.status === 422) Object.assign(err, { fields: [{ field: 'code', message: WRONG_CODE }] });
    reportFormError(form, err, { fallbackField: 'code' });
    return;
  }
  done();
  hideEnrolment();
  toast('The authenticator app is on: logging in now asks for its code. Save your recovery codes.');
  showRecoveryCodes(answer.recovery_codes);
  await loadStatus();
}

/* ---------- recovery codes ---------- */

async function onRegenerate() {
  const button = $('recovery-codes-regenerate');
  const done = setBusy(button, 'Making new codes…');
  let answer;
  try {
    answer = await callApi((token) => api.newRecoveryCodes(token));
  } catch (err) {
    done();
    if (!err.handled) toast(`No new recovery codes were made. ${err.message}`, 'error');
    return;
  }
  done();
  toast('New recovery codes: the old ones no longer work.');
  showRecoveryCodes(answer.recovery_codes);
  await loadStatus();
}

async function afterCodesSaved() {
  await loadStatus();
  focusElement($('recovery-codes-heading'));
}

/* ---------- turning the app off ---------- */

function showRemoveQuestion(shown) {
  $('totp-remove-confirm').hidden = !shown;
  if (status) render();
  if (shown) focusElement($('totp-remove-no'));
}

async function onRemove() {
  const button = $('totp-remove-yes');
  const done = setBusy(button, 'Turning off…');
  try {
    await callApi((token) => api.removeTotp(token));
  } catch (err) {
    done();
    if (err.handled) return;
    // 404: it was already off (another tab); the fresh status shows that.
    if (err.status !== 404) { toast(`The app was not turned off. ${err.message}`, 'error'); return; }
  }
  done();
  showRemoveQuestion(false);
  clearRecoveryCodes();
  toast('The authenticator app is off: logging in needs your password only.');
  await loadStatus();
  focusElement($('totp-heading'));
}
