// The persons list (#/persons?order=newest&size=10&page=2): the table in a stated order,
// paging over the service's cursors, each row's edit and delete buttons (admins), and the
// delete confirmation in the row. The page shown, its label and its URL change only once the
// page has loaded; a failed load keeps what was shown and offers Retry beside the pager.

import * as api from './api.js';
import { currentRoute, go } from './router.js';
import { callApi, isAdmin } from './session.js';
import { $, button, flash, focusElement, setBusy, toast } from './ui.js';

const SLOW_MS = 300; // show "loading" only when an answer is slow enough to notice
const AUTO_RETRY_MAX_S = 30; // a 503 asking for a short wait is retried without a click
const ORDERS = ['newest', 'name'];
const SIZES = [5, 10, 20, 50];
const CURSORS_KEY = 'tokenauth.page_cursors';

// What the table shows: only ever a page that loaded.
const shown = { order: 'newest', limit: 10, page: 1, items: [], next: null, total: null };
let seq = 0; // drops answers that a newer load overtook
let loadingTimer = 0;
let retryTimer = 0;
let onEdit = () => {};

/** Wires the pager, the order, the page size and Retry; `onEdit(person)` opens the editor. */
export function wirePersonsList(handlers) {
  onEdit = handlers.onEdit;
  $('next-page').addEventListener('click', () => step(+1));
  $('prev-page').addEventListener('click', () => step(-1));
  $('order').addEventListener('change', () => showPage(selected({ page: 1 }), { push: true }));
  $('page-size').addEventListener('change', () => showPage(selected({ page: 1 }), { push: true }));
}

/** Shows the page a URL names (#/persons?order=&size=&page=), correcting the URL if needed. */
export function openPersons(params) {
  const order = ORDERS.includes(params.get('order')) ? params.get('order') : 'newest';
  const size = Number(params.get('size'));
  const limit = SIZES.includes(size) ? size : 10;
  const page = Math.max(1, Math.floor(Number(params.get('page'))) || 1);
  return showPage({ order, limit, page }, { push: false });
}

/** Reloads the page shown (after an edit or a delete), marking and focusing as asked. */
export function refreshPersons({ markId = null, focusAfter = null } = {}) {
  forgetCursorsAfter(shown.page);
  return showPage(selected({ page: shown.page }), { push: false, markId, focusAfter });
}

/** Shows the first page newest first, where a person just added is (marked). */
export function showNewest({ markId = null, focusAfter = null } = {}) {
  forgetCursorsAfter(1);
  return showPage({ order: 'newest', limit: shown.limit, page: 1 }, { push: true, markId, focusAfter });
}

/** Empties the table and forgets the cursors, e.g. when the person logs out. */
export function clearPersons() {
  seq += 1;
  window.clearTimeout(retryTimer);
  shown.items = [];
  $('persons-body').replaceChildren();
  hideProblem();
  try { window.sessionStorage.removeItem(CURSORS_KEY); } catch { /* nothing stored */ }
}

/** The row's button for this action ("edit", "delete"), if the person is on this page. */
export function rowButton(id, action) {
  const row = rowOf(id);
  return row ? row.querySelector(`[data-action="${action}"]`) : null;
}

function rowOf(id) {
  return [...$('persons-body').rows].find((tr) => tr.dataset.id === id) || null;
}

/* ---------- cursors ---------- */

// The cursor that starts each page, per order and size: cursors[0] is null (page 1). There is
// no previous-cursor in the API, so going back (and a reload, from sessionStorage) uses these.
// A bookmarked page in a fresh tab has none: the pages before it are walked from page 1.
function readCursors(order, limit) {
  try {
    const saved = JSON.parse(window.sessionStorage.getItem(CURSORS_KEY) || 'null');
    if (saved && saved.order === order && saved.limit === limit && Array.isArray(saved.cursors)) {
      return saved.cursors;
    }
  } catch { /* unreadable: start again */ }
  return [null];
}

function saveCursors(order, limit, cursors) {
  try {
    window.sessionStorage.setItem(CURSORS_KEY, JSON.stringify({ order, limit, cursors }));
  } catch { /* memory only: a reload walks from page 1 */ }
}

// After an add or a delete, pages after this one start elsewhere.
function forgetCursorsAfter(page) {
  const cursors = readCursors(shown.order, shown.limit);
  saveCursors(shown.order, shown.limit, cursors.slice(0, page));
}

function fetchPage(order, limit, cursor) {
  return callApi((token) => api.listPersons(token, { limit, cursor, order }));
}

// Loads page `page`, walking forward from the last page whose cursor is known; the last
// page that exists when the list is shorter. Returns { page, answer }.
async function loadPage(order, limit, page) {
  const cursors = readCursors(order, limit);
  while (cursors.length < page) {
    const answer = await fetchPage(order, limit, cursors[cursors.length - 1]);
    if (!answer.next_cursor) return { page: cursors.length, answer };
    cursors.push(answer.next_cursor);
    saveCursors(order, limit, cursors);
  }
  const answer = await fetchPage(order, limit, cursors[page - 1]);
  if (answer.next_cursor) cursors[page] = answer.next_cursor;
  saveCursors(order, limit, cursors);
  return { page, answer };
}

/* ---------- showing a page ---------- */

function selected({ page }) {
  return { order: $('order').value, limit: Number($('page-size').value), page };
}

function step(delta) {
  const pressed = delta > 0 ? $('next-page') : $('prev-page');
  const other = delta > 0 ? $('prev-page') : $('next-page');
  showPage(selected({ page: shown.page + delta }), {
    push: true,
    // Where the eye should go: the list's start when the heading scrolled away (a phone),
    // otherwise the pressed button, or its twin when it became disabled (first or last page).
    focusAfter: () => {
      if (!inView($('persons-heading'))) return $('persons-heading');
      return pressed.disabled ? other : pressed;
    },
  });
}

async function showPage(target, { push, markId = null, focusAfter = null }) {
  const mine = ++seq;
  window.clearTimeout(retryTimer);
  const stopLoading = startLoading();
  let loaded;
  try {
    loaded = await loadPage(target.order, target.limit, target.page);
  } catch (err) {
    if (mine !== seq || err.handled) return;
    showProblem(err, () => showPage(target, { push, markId, focusAfter }));
    return;
  } finally {
    if (mine === seq) stopLoading();
  }
  // Overtaken by a newer load, or the person went to another page (Back, then Forward) while
  // this one loaded: its answer must not put the list's address back in the address bar.
  if (mine !== seq || currentRoute().name !== 'persons') return;
  const { page, answer } = loaded;
  if (!answer.items.length && page > 1) {
    // The last person of this page went away: step back rather than show an empty page.
    forgetCursorsAfter(page - 1);
    await showPage({ ...target, page: page - 1 }, { push: false, markId, focusAfter });
    return;
  }
  hideProblem();
  Object.assign(shown, {
    order: target.order, limit: target.limit, page, items: answer.items, next: answer.next_cursor || null,
    total: Number.isInteger(answer.total) ? answer.total : null,
  });
  render();
  go('persons', { order: shown.order, size: String(shown.limit), page: String(page) }, { replace: !push });
  if (markId) flash(rowOf(markId));
  if (focusAfter) focusElement(focusAfter());
}

function inView(el) {
  const box = el.getBoundingClientRect();
  return box.top >= 0 && box.bottom <= window.innerHeight;
}

function startLoading() {
  const region = $('persons');
  region.setAttribute('aria-busy', 'true');
  $('prev-page').disabled = true;
  $('next-page').disabled = true;
  $('pager-retry').disabled = true;
  // One timer for all loads: a newer load cancels the older one's pending "loading" notice.
  window.clearTimeout(loadingTimer);
  loadingTimer = window.setTimeout(() => {
    $('persons-loading').hidden = false;
    $('persons-table-wrap').classList.add('is-loading');
  }, SLOW_MS);
  return () => {
    window.clearTimeout(loadingTimer);
    region.removeAttribute('aria-busy');
    $('persons-loading').hidden = true;
    $('persons-table-wrap').classList.remove('is-loading');
    $('pager-retry').disabled = false;
    updatePager();
  };
}

// A failed load: the page shown stays, the message and Retry sit beside the pager, and a
// short 503 wait is retried without a click.
function showProblem(err, retry) {
  const auto = err.status === 503 && err.retryAfter !== null && err.retryAfter <= AUTO_RETRY_MAX_S;
  const wait = auto ? Math.max(1, err.retryAfter) : 0;
  $('pager-problem-text').textContent = auto
    ? `Could not load persons: the service is temporarily unavailable. Trying again in ${wait} seconds…`
    : `Could not load persons. ${err.message}`;
  $('pager-retry').onclick = retry;
  $('pager-problem').hidden = false;
  // The pressed button was disabled while loading, which dropped the focus: give it to Retry.
  if (document.activeElement === document.body) {
    $('pager-retry').disabled = false;
    focusElement($('pager-retry'));
  }
  if (auto) retryTimer = window.setTimeout(retry, wait * 1000);
}

function hideProblem() {
  $('pager-problem').hidden = true;
  $('pager-problem-text').textContent = '';
}

function updatePager() {
  $('prev-page').disabled = shown.page <= 1;
  $('next-page').disabled = !shown.next;
  $('order').value = shown.order;
  $('page-size').value = String(shown.limit);
  $('page-info').textContent = rangeText();
}

// "11–20 of 30": positions from the page number, as every page before holds `limit` rows.
function rangeText() {
  const count = shown.items.length;
  if (!count) return '';
  const first = (shown.page - 1) * shown.limit + 1;
  const range = `${first}–${first + count - 1}`;
  return shown.total === null ? range : `${range} of ${shown.total}`;
}

/* ---------- the table ---------- */

function render() {
  const { items } = shown;
  const admin = isAdmin();
  $('persons-body').replaceChildren(...items.map((person) => personRow(person, admin)));
  const empty = items.length === 0;
  $('persons-table-wrap').hidden = empty;
  $('persons-empty').hidden = !empty;
  $('persons-empty').textContent = admin
    ? 'No persons yet. Add the first one with “Add person”.'
    : 'No persons yet. An administrator can add some.';
  updatePager();
}

function cell(content, label, className) {
  const td = document.createElement('td');
  if (typeof content === 'string') {
    td.textContent = content;
  } else {
    // One wrapper: on a phone the cell is a grid, and each child would take a row of its own.
    const text = document.createElement('span');
    text.append(...content);
    td.append(text);
  }
  td.dataset.label = label; // shown by CSS as a heading when rows stack on narrow screens
  if (className) td.className = className;
  return td;
}

const KEEP_WHOLE = 24; // a longer piece may still break inside, rather than stick out

// An address may wrap only after "@" and ".", never inside a word ("example.or / g") nor
// after a hyphen: each piece is kept whole, with a <wbr> after its "@" or ".".
function emailParts(email) {
  const parts = [];
  for (const piece of email.split(/(?<=[@.])/)) {
    if (parts.length) parts.push(document.createElement('wbr'));
    const span = document.createElement('span');
    span.textContent = piece;
    if ([...piece].length <= KEEP_WHOLE) span.className = 'keep';
    parts.push(span);
  }
  return parts;
}

function personRow(person, admin) {
  const tr = document.createElement('tr');
  tr.dataset.id = person.id;
  const name = cell(person.name, 'Name', 'name');
  const email = cell(emailParts(person.email), 'Email', 'email');
  const age = cell(person.age === null || person.age === undefined ? '—' : String(person.age), 'Age', 'num');
  tr.append(name, email, age);
  if (admin) tr.append(actionsCell(person));
  return tr;
}

function actionsCell(person) {
  const td = document.createElement('td');
  td.className = 'actions';
  td.dataset.label = 'Actions';

  const normal = document.createElement('div');
  normal.className = 'row-actions';
  const edit = button('Edit', 'button button-small button-secondary', () => onEdit(person));
  edit.dataset.action = 'edit';
  edit.setAttribute('aria-label', `Edit ${person.name}`);
  const del = button('Delete', 'button button-small button-danger-outline', () => askDelete(td));
  del.dataset.action = 'delete';
  del.setAttribute('aria-label', `Delete ${person.name}`);
  normal.append(edit, del);

  // The confirmation lives in the row itself: no window.confirm, and it stays in context.
  const confirm = document.createElement('div');
  confirm.className = 'confirm';
  confirm.hidden = true;
  confirm.setAttribute('role', 'group');
  confirm.setAttribute('aria-label', `Confirm deleting ${person.name}`);
  const question = document.createElement('p');
  question.className = 'confirm-text';
  question.textContent = `Delete ${person.name}? This cannot be undone.`;
  const yes = button('Yes, delete', 'button button-small button-danger', () => deletePerson(person, yes));
  yes.dataset.action = 'confirm-delete';
  const no = button('Cancel', 'button button-small button-secondary', () => cancelDelete(td));
  no.dataset.action = 'cancel-delete';
  confirm.append(question, yes, no);
  confirm.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') cancelDelete(td);
  });

  td.append(normal, confirm);
  return td;
}

/* ---------- deleting ---------- */

function askDelete(td) {
  td.querySelector('.row-actions').hidden = true;
  td.querySelector('.confirm').hidden = false;
  // Focus the harmless choice first, as the WAI-ARIA alert dialog pattern advises.
  focusElement(td.querySelector('[data-action="cancel-delete"]'));
}

function cancelDelete(td) {
  td.querySelector('.confirm').hidden = true;
  td.querySelector('.row-actions').hidden = false;
  focusElement(td.querySelector('[data-action="delete"]'));
}

async function deletePerson(person, yes) {
  const done = setBusy(yes, 'Deleting…');
  const index = shown.items.findIndex((p) => p.id === person.id);
  try {
    await callApi((token) => api.deletePerson(token, person.id));
    toast(`Deleted ${person.name}.`);
  } catch (err) {
    if (err.handled) return;
    done();
    if (err.status !== 404) {
      toast(`Could not delete ${person.name}. ${err.message}`, 'error');
      return;
    }
    toast(`${person.name} had already been deleted.`);
  }
  // The place is kept: focus goes to the row that took the deleted one's place.
  await refreshPersons({ focusAfter: () => nearbyRowButton(index) });
}

function nearbyRowButton(index) {
  const rows = [...$('persons-body').rows];
  const row = rows[Math.min(index, rows.length - 1)];
  return (row && row.querySelector('[data-action="edit"]')) || $('add-person');
}
