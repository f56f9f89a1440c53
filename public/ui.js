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

const TOAST_MS = 8000;
let toastTimer = 0;

/** Shows the outcome of an action in the toast pinned to the viewport, where the eye is. */
export function toast(message, kind = 'info') {
  const polite = $('toast');
  const urgent = $('toast-alert');
  polite.textContent = '';
  urgent.textContent = '';
  (kind === 'error' ? urgent : polite).textContent = message;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => { polite.textContent = ''; urgent.textContent = ''; }, TOAST_MS);
}

/** Briefly marks the element (a row that just changed), so the eye finds it. */
export function flash(el) {
  if (!el) return;
  el.classList.remove('is-changed');
  void el.offsetWidth; // restart the animation when the same row changes twice
  el.classList.add('is-changed');
  el.addEventListener('animationend', () => el.classList.remove('is-changed'), { once: true });
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

/** Disables the button for Retry-After `seconds`, counting down on it (or until `liftOn` gets input). */
export function holdOff(button, seconds, liftOn = null) {
  // So that a person does not hammer a throttled route; the login throttle counts per
  // username, so typing another name lifts the wait.
  if (!seconds) return;
  const label = button.textContent;
  const end = Date.now() + Math.min(seconds, 3600) * 1000;
  button.disabled = true;
  const tick = () => {
    const left = Math.ceil((end - Date.now()) / 1000);
    if (left <= 0) { lift(); return; }
    button.textContent = `${label} (${clockText(left)})`;
  };
  const timer = window.setInterval(tick, 1000);
  function lift() {
    window.clearInterval(timer);
    button.disabled = false;
    button.textContent = label;
  }
  tick();
  if (liftOn) liftOn.addEventListener('input', lift, { once: true });
}

// 75 -> "1:15", 3600 -> "60:00": the wait as a countdown.
function clockText(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, '0')}`;
}

/** A plain button (type=button) with its label, classes and click handler. */
export function button(label, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

/** A <time> element showing an ISO instant as a medium date and a short time. */
export function timeOf(iso) {
  const time = document.createElement('time');
  time.dateTime = iso;
  time.textContent = new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
  return time;
}
