// The second factor's field, shared by the login's second step and the "Confirm it is you"
// dialog: the 6-digit code from the authenticator app, or (the switch under it) a recovery code.

import { focusElement } from './ui.js';

const TOTP_CODE = /^\d{6}$/;
const FEW_CODES_LEFT = 3;
const SWITCH_TEXT = {
  otp: 'Use a recovery code instead',
  recovery_code: 'Use the code from your app instead',
};

/** Wires the form's "Use a recovery code instead" switch. */
export function wireFactorCode(form) {
  form.querySelector('[data-factor-switch]').addEventListener('click', () => {
    showProof(form, shownProof(form) === 'otp' ? 'recovery_code' : 'otp');
    focusElement(factorInput(form));
  });
}

/** Empties the fields and shows the first of `methods` the page can ask for (the app's code first). */
export function resetFactorCode(form, methods = ['otp', 'recovery_code']) {
  const usable = ['otp', 'recovery_code'].filter((proof) => methods.includes(proof));
  for (const proof of ['otp', 'recovery_code']) form.elements.namedItem(proof).value = '';
  showProof(form, usable[0] || 'otp');
  // The switch only when there is something to switch to.
  form.querySelector('[data-factor-switch]').hidden = usable.length < 2;
}

/** The input the person types the proof into now. */
export function factorInput(form) {
  return form.elements.namedItem(shownProof(form));
}

/** `{ proof, value }` to send, or `{ problem }` (a field and a message) when it cannot be right. */
export function readFactorCode(form) {
  const proof = shownProof(form);
  const value = form.elements.namedItem(proof).value.replace(/\s+/g, '');
  if (proof === 'otp' && !TOTP_CODE.test(value)) {
    return { problem: { field: 'otp', message: 'Enter the 6 digits your authenticator app shows now.' } };
  }
  if (proof === 'recovery_code' && !value) {
    return { problem: { field: 'recovery_code', message: 'Enter one of your recovery codes.' } };
  }
  return { proof, value };
}

function shownProof(form) {
  return form.querySelector('[data-factor="otp"]').hidden ? 'recovery_code' : 'otp';
}

function showProof(form, proof) {
  for (const field of form.querySelectorAll('[data-factor]')) field.hidden = field.dataset.factor !== proof;
  form.querySelector('[data-factor-switch]').textContent = SWITCH_TEXT[proof];
}

/** After a recovery code was used: "... 9 recovery codes are left." (and advice when few are). */
export function recoveryCodesLeft(left) {
  const count = left === 1 ? '1 recovery code is left' : `${left} recovery codes are left`;
  const advice = left <= FEW_CODES_LEFT ? ' Make new ones on the Security page.' : '';
  return `You used a recovery code, which now no longer works. ${count}.${advice}`;
}

/** What to do after a refused code of this kind. */
export function tryAgainHint(proof) {
  if (proof === 'passkey') return 'Try again with a passkey of this account.';
  return proof === 'otp'
    ? 'Type the code your app shows now (each code works once).'
    : 'Check the code you saved; each recovery code works once.';
}
