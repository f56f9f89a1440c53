// The service's password and username rules (GET /auth/policy), read once and used by every
// form that sets a password: the hints, the "5 of 15 minimum" counter and the checks made
// before anything is sent. Nothing about the rules is hard-coded in the page.

import * as api from './api.js';

let rules = null;
let loading = null;

/** Loads the policy once; resolves to it, or to null when the service could not say. */
export function loadPolicy() {
  if (!loading) {
    loading = api.policy()
      .then((answer) => { rules = answer; return rules; })
      .catch(() => { loading = null; return null; }); // try again with the next form shown
  }
  return loading;
}

/** The policy, or null before it loaded. */
export function currentPolicy() {
  return rules;
}

/** Characters as the service counts them: code points after NFC (an emoji is one). */
export function passwordLength(password) {
  return [...password.normalize('NFC')].length;
}

/** "5 of 15 minimum" (or "300 of 256 maximum"); just the count while the policy is unknown. */
export function countText(password) {
  const count = passwordLength(password);
  if (!rules) return count === 1 ? '1 character' : `${count} characters`;
  if (count > rules.password_max_length) return `${count} of ${rules.password_max_length} maximum`;
  return `${count} of ${rules.password_min_length} minimum`;
}

/** The problem with a new password the page can see before sending it, or null. */
export function passwordProblem(password, username = '') {
  if (!rules) return null; // the service will say
  const count = passwordLength(password);
  if (count < rules.password_min_length) return `must be at least ${rules.password_min_length} characters`;
  if (count > rules.password_max_length) return `must be at most ${rules.password_max_length} characters`;
  if (username && password.normalize('NFC') === username.normalize('NFC')) return 'must not be the username';
  return null;
}

/** The problem with a new username the page can see before sending it, or null. */
export function usernameProblem(username) {
  if (!rules) return null;
  const count = [...username].length;
  const { username_min_length: min, username_max_length: max } = rules;
  if (count < min || count > max) return `must be ${min} to ${max} characters`;
  if (!matches(rules.username_pattern, username)) return `may contain only ${rules.username_rule}`;
  return null;
}

function matches(pattern, text) {
  try { return new RegExp(pattern, 'u').test(text); } catch { return true; } // the service checks
}
