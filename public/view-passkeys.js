// The Security page's Passkeys section (#passkeys-section): the account's passkeys with their
// name, when each was added and last used; adding one (a name, then the browser's own
// prompt), renaming and removing one. It shows from the Security page's GET /users/me/mfa
// (addSecuritySection); removing needs a recent sign-in with the second factor, which the
// "Confirm it is you" dialog gets through callApi like every other call.

import * as api from './api.js';
import { clearFormErrors, failLocally, reportFormError } from './forms.js';
import { createPasskey, passkeyFailure, passkeysSupported } from './passkeys.js';
import { callApi } from './session.js';
import { $, button, focusElement, setBusy, toast } from './ui.js';
import { addSecuritySection, reloadSecurity } from './view-security.js';

const MAX_PASSKEYS = 20;
const MAX_NAME = 64;

/** Wires the section's form and registers it with the Security page. */
export function wirePasskeys() {
  $('passkey-add-form').addEventListener('submit', onAdd);
  addSecuritySection({ show, clear });
}

function show(status) {
  const passkeys = Array.isArray(status.passkeys) ? status.passkeys : [];
  $('passkeys-section').hidden = false;
  $('passkeys-state').textContent = passkeys.length
    ? `${passkeys.length === 1 ? '1 passkey' : `${passkeys.length} passkeys`}: each signs you in without a password, or after it as your second factor.`
    : 'None yet. A passkey signs you in with your device\'s screen lock instead of a password.';
  const list = $('passkeys-list');
  list.replaceChildren(...passkeys.map(row));
  list.hidden = passkeys.length === 0;
  $('passkey-add-form').hidden = passkeys.length >= MAX_PASSKEYS || !passkeysSupported();
  $('passkeys-unsupported').hidden = passkeysSupported();
}

function clear() {
  $('passkeys-section').hidden = true;
  $('passkeys-list').replaceChildren();
  $('passkey-add-form').reset();
  clearFormErrors($('passkey-add-form'));
}

function row(passkey) {
  const item = document.createElement('li');
  item.className = 'passkey';
  item.dataset.passkeyId = passkey.id;
  const name = document.createElement('span');
  name.className = 'passkey-name';
  name.textContent = passkey.name;
  const facts = document.createElement('span');
  facts.className = 'passkey-facts';
  const used = passkey.last_used_at ? when(passkey.last_used_at) : 'never';
  facts.textContent = `Added ${when(passkey.created_at)} · last used ${used}`;
  const rename = secondaryButton('Rename', () => startRename(item, passkey));
  rename.setAttribute('aria-label', `Rename ${passkey.name}`);
  const remove = secondaryButton('Remove', () => onRemove(remove, passkey));
  remove.setAttribute('aria-label', `Remove ${passkey.name}`);
  item.append(name, facts, rename, remove);
  return item;
}

function when(iso) {
  return new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

// The section's buttons are secondary ones.
function secondaryButton(label, onClick) {
  return button(label, 'button button-secondary', onClick);
}

/* ---------- adding ---------- */

async function onAdd(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const name = form.elements.name.value.trim();
  if (!name) { failLocally(form, [{ field: 'name', message: 'Name this passkey, e.g. "Laptop" or "Phone".' }]); return; }
  if (name.length > MAX_NAME) { failLocally(form, [{ field: 'name', message: `At most ${MAX_NAME} characters.` }]); return; }
  const submit = $('passkey-add');
  const done = setBusy(submit, 'Waiting for your device…');
  try {
    const options = await callApi((token) => api.passkeyCreationOptions(token));
    let credential;
    try {
      credential = await createPasskey(options);
    } catch (err) {
      failLocally(form, [{ field: 'name', message: passkeyFailure(err) }]);
      return;
    }
    await callApi((token) => api.addPasskey(token, credential, name, options.challenge_id));
  } catch (err) {
    if (!err.handled) reportFormError(form, err, { fallbackField: 'name' });
    return;
  } finally {
    done();
  }
  form.reset();
  toast(`Passkey "${name}" added.`);
  await reloadSecurity();
}

/* ---------- renaming and removing ---------- */

function startRename(item, passkey) {
  const form = document.createElement('form');
  form.className = 'passkey-rename';
  form.noValidate = true;
  const label = document.createElement('label');
  label.textContent = 'New name';
  const input = document.createElement('input');
  input.name = 'name';
  input.maxLength = MAX_NAME;
  input.value = passkey.name;
  input.id = `passkey-rename-${passkey.id}`;
  label.htmlFor = input.id;
  const error = document.createElement('p');
  error.className = 'field-error';
  error.dataset.errorFor = 'name';
  const save = document.createElement('button');
  save.type = 'submit';
  save.className = 'button button-primary';
  save.textContent = 'Save';
  const cancel = secondaryButton('Cancel', () => { form.remove(); focusElement(item.querySelector('button')); });
  form.append(label, input, error, save, cancel);
  form.addEventListener('submit', (event) => onRename(event, passkey));
  item.append(form);
  focusElement(input);
}

async function onRename(event, passkey) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const name = form.elements.name.value.trim();
  if (!name) { failLocally(form, [{ field: 'name', message: 'A passkey needs a name.' }]); return; }
  try {
    await callApi((token) => api.renamePasskey(token, passkey.id, name));
  } catch (err) {
    if (!err.handled) reportFormError(form, err, { fallbackField: 'name' });
    return;
  }
  toast(`Renamed to "${name}".`);
  await reloadSecurity();
}

async function onRemove(removeButton, passkey) {
  const done = setBusy(removeButton, 'Removing…');
  try {
    await callApi((token) => api.removePasskey(token, passkey.id));
  } catch (err) {
    done();
    if (!err.handled) toast(`Could not remove the passkey. ${err.message}`, 'error');
    return;
  }
  toast(`Passkey "${passkey.name}" removed.`);
  await reloadSecurity();
}
