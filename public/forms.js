// Form errors shared by every form: inline errors next to their field (aria-invalid), the
// form's own alert, and the focus move to the first problem.

import { sentence } from './api.js';
import { countText, currentPolicy, loadPolicy } from './policy.js';
import { $, focusElement } from './ui.js';

const FIELD_NAMES = {
  username: 'Username', password: 'Password', confirm: 'Confirmation',
  name: 'Name', email: 'Email', age: 'Age',
  current_password: 'Current password', new_password: 'New password',
};

/** Wires every password counter and "show password" box of the page. */
export function wirePasswordHelpers() {
  document.querySelectorAll('[data-counter-for]').forEach((counter) => {
    const input = document.getElementById(counter.dataset.counterFor);
    input.addEventListener('input', () => { counter.textContent = countText(input.value); });
  });
  document.querySelectorAll('[data-show-passwords]').forEach((box) => {
    box.addEventListener('change', () => {
      for (const id of box.dataset.showPasswords.split(' ')) {
        document.getElementById(id).type = box.checked ? 'text' : 'password';
      }
    });
  });
}

/** Reads the service's policy (once) and writes its rules and the counters into the page. */
export async function showPolicy() {
  await loadPolicy();
  const rules = currentPolicy();
  if (rules) {
    const length = `${rules.password_min_length} to ${rules.password_max_length} characters`;
    document.querySelectorAll('[data-password-length]').forEach((el) => { el.textContent = length; });
    const names = `${rules.username_min_length} to ${rules.username_max_length} ${rules.username_rule}.`;
    document.querySelectorAll('[data-username-rule]').forEach((el) => { el.textContent = names; });
    showEmailRequired(Boolean(rules.email_required));
  }
  refreshCounters();
}

// TOKENAUTH_REQUIRE_EMAIL: the registration's email field says whether it may stay empty.
function showEmailRequired(required) {
  document.querySelectorAll('[data-email-optional]').forEach((el) => {
    el.textContent = required ? '(required)' : '(optional)';
  });
  $('register-email').required = required;
}

/** Recounts every password counter (after a form was reset). */
export function refreshCounters() {
  document.querySelectorAll('[data-counter-for]').forEach((counter) => {
    counter.textContent = countText(document.getElementById(counter.dataset.counterFor).value);
  });
}

/** Removes every error the form shows. */
export function clearFormErrors(form) {
  form.querySelectorAll('[data-error-for]').forEach((el) => { el.textContent = ''; });
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  formAlert(form, '');
}

/** Shows a message in the form's own alert region. */
export function formAlert(form, message) {
  const box = form.querySelector('[data-form-alert]');
  if (box) box.textContent = message;
}

/** Turns a failed submit into inline errors, a form message and a focus move. */
export function reportFormError(form, err, { fallbackField = null, summary = null } = {}) {
  if (err.handled) return;
  const { first, stray } = showFieldErrors(form, err.fields);
  const text = [summary || err.message, ...stray].join(' ');
  formAlert(form, text);
  focusElement(first || (fallbackField && form.elements.namedItem(fallbackField)) || form.querySelector('[data-form-alert]'));
}

/** Shows problems found in the page, before anything was sent. */
export function failLocally(form, problems) {
  const { first } = showFieldErrors(form, problems);
  formAlert(form, problems.length === 1 ? problems[0].message : 'Please correct the highlighted fields.');
  focusElement(first);
}

// Shows each error next to its field and returns the first invalid input (for focus).
function showFieldErrors(form, fields) {
  let first = null;
  const stray = [];
  for (const { field, message } of fields) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    const input = form.elements.namedItem(field);
    if (!slot || !input) { stray.push(readable(field, message)); continue; }
    const text = readable(field, message);
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    input.setAttribute('aria-invalid', 'true');
    if (!first) first = input;
  }
  return { first, stray };
}

// The service says "must be at least 15 characters"; the page says "Password must be ...".
function readable(field, message) {
  const text = /^[a-z]/.test(message) && FIELD_NAMES[field] ? `${FIELD_NAMES[field]} ${message}` : message;
  return sentence(text);
}
