// Small page helpers shared by every view: the two live regions, focus moves and busy buttons.
// The page runs under a strict CSP, so nothing here (or in the views) uses innerHTML, inline
// styles or eval: the DOM is built with createElement/textContent and toggled with `hidden`.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** Shows a message in the polite status region, or in the alert region for an error. */
export function announce(message, kind = 'info') {
  const status = $('status');
  const alert = $('alert');
  status.textContent = '';
  alert.textContent = '';
  if (!message) return;
  (kind === 'error' ? alert : status).textContent = message;
}

/** Moves the keyboard focus to the element, if there is one. */
export function focusElement(el) {
  if (!el) return;
  // preventScroll is off on purpose: the focused thing should come into view.
  el.focus();
}

/** Disables the button with a busy label; returns the function that restores it. */
export function setBusy(button, label) {
  const original = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = label;
  return () => {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = original;
  };
}

/** Disables the button for Retry-After `seconds` (or until `liftOn` gets input). */
export function holdOff(button, seconds, liftOn = null) {
  // So that a person does not hammer a throttled route; the login throttle counts per
  // username, so typing another name lifts the wait.
  if (!seconds) return;
  button.disabled = true;
  const lift = () => { button.disabled = false; };
  const timer = window.setTimeout(lift, Math.min(seconds, 3600) * 1000);
  if (liftOn) {
    liftOn.addEventListener('input', () => { window.clearTimeout(timer); lift(); }, { once: true });
  }
}
