// The Security page's recovery codes, shown once (after turning the app on, or after making a
// new set): the list, "Download" (a text file from a Blob URL, made in the page: the codes
// never go anywhere else) and "I have saved them".

import { currentUser } from './session.js';
import { $, focusElement } from './ui.js';

const FILE_NAME = 'tokenauth-recovery-codes.txt';
const URL_KEPT_MS = 60_000; // long enough for the browser to read the file it was given

let codes = [];
let onSaved = () => {};

/** Wires Download and "I have saved them"; `onSaved()` runs once the person has said so. */
export function wireRecoveryCodes(handlers) {
  onSaved = handlers.onSaved;
  $('recovery-codes-download').addEventListener('click', download);
  $('recovery-codes-saved').addEventListener('click', () => {
    clearRecoveryCodes();
    onSaved();
  });
}

/** Shows the codes, this once, focus on the section's heading. */
export function showRecoveryCodes(newCodes) {
  codes = [...newCodes];
  $('recovery-codes-list').replaceChildren(...codes.map((code) => {
    const li = document.createElement('li');
    const text = document.createElement('code');
    text.textContent = code;
    li.append(text);
    return li;
  }));
  $('recovery-codes-panel').hidden = false;
  focusElement($('recovery-codes-heading'));
}

/** Whether codes are on screen now (the page then offers no other set). */
export function recoveryCodesShown() {
  return codes.length > 0;
}

/** Forgets the codes and takes them off the page. */
export function clearRecoveryCodes() {
  codes = [];
  $('recovery-codes-list').replaceChildren();
  $('recovery-codes-panel').hidden = true;
}

function download() {
  const user = currentUser();
  const lines = [
    `Recovery codes of ${user ? user.username : 'your account'} at ${window.location.host}`,
    `Made ${new Date().toLocaleString()}. Each code logs in once instead of the authenticator app's code.`,
    '',
    ...codes,
    '',
  ];
  const url = URL.createObjectURL(new Blob([lines.join('\n')], { type: 'text/plain;charset=utf-8' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = FILE_NAME;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), URL_KEPT_MS);
}
