// The persons list: the table, paging over the service's cursor with a loading state, and
// each row's edit and delete buttons (admins), with the delete confirmation in the row.

import * as api from './api.js';
import { callApi, isAdmin } from './session.js';
import { $, announce, focusElement, setBusy } from './ui.js';

const SLOW_MS = 300; // show "loading" only when an answer is slow enough to notice

const paging = { limit: 10, cursor: null, previous: [], next: null, items: [], seq: 0 };
let loadingTimer = 0;
let onEdit = () => {};
let onDeleted = () => {};

/** Wires the pager and the page size; `onEdit(person)` and `onDeleted(person)` reach the form. */
export function wirePersonsList(handlers) {
  onEdit = handlers.onEdit;
  onDeleted = handlers.onDeleted;
  paging.limit = Number($('page-size').value);
  $('next-page').addEventListener('click', () => changePage('next'));
  $('prev-page').addEventListener('click', () => changePage('previous'));
  $('page-size').addEventListener('change', (event) => {
    paging.limit = Number(event.target.value);
    resetPaging();
    loadPersons();
  });
}

/** Goes back to the first page (for the next load). */
export function resetPaging() {
  paging.cursor = null;
  paging.previous = [];
  paging.next = null;
}

/** Empties the table, e.g. when the person logs out. */
export function clearPersons() {
  $('persons-body').replaceChildren();
}

/** Loads the page at the current cursor; `seq` drops answers that a newer request overtook. */
export async function loadPersons({ focusAfter = null } = {}) {
  const seq = ++paging.seq;
  const { limit, cursor } = paging; // the page asked for, also when the call is retried
  const stopLoading = startLoading();
  try {
    const page = await callApi((token) => api.listPersons(token, { limit, cursor }));
    if (seq !== paging.seq) return;
    paging.items = Array.isArray(page.items) ? page.items : [];
    paging.next = page.next_cursor || null;
    if (!paging.items.length && paging.previous.length) {
      // The last person of this page went away: step back rather than show an empty page.
      paging.cursor = paging.previous.pop();
      stopLoading();
      await loadPersons({ focusAfter });
      return;
    }
    renderPersons();
    if (focusAfter) focusElement(focusAfter());
  } catch (err) {
    if (seq === paging.seq && !err.handled) announce(`Could not load persons. ${err.message}`, 'error');
  } finally {
    if (seq === paging.seq) stopLoading();
  }
}

/** The row's button for this action ("edit", "delete"), if the person is on this page. */
export function rowButton(id, action) {
  const row = [...$('persons-body').rows].find((tr) => tr.dataset.id === id);
  return row ? row.querySelector(`[data-action="${action}"]`) : null;
}

/* ---------- paging ---------- */

function startLoading() {
  const region = $('persons');
  region.setAttribute('aria-busy', 'true');
  $('prev-page').disabled = true;
  $('next-page').disabled = true;
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
    updatePager();
  };
}

function updatePager() {
  $('prev-page').disabled = paging.previous.length === 0;
  $('next-page').disabled = !paging.next;
  const page = paging.previous.length + 1;
  const count = paging.items.length;
  $('page-info').textContent = count
    ? `Page ${page} · ${count} ${count === 1 ? 'person' : 'persons'}`
    : (page > 1 ? `Page ${page}` : '');
}

function changePage(direction) {
  if (direction === 'next' && paging.next) {
    paging.previous.push(paging.cursor);
    paging.cursor = paging.next;
  } else if (direction === 'previous' && paging.previous.length) {
    paging.cursor = paging.previous.pop();
  } else {
    return;
  }
  announce('');
  const pressed = direction === 'next' ? $('next-page') : $('prev-page');
  const other = direction === 'next' ? $('prev-page') : $('next-page');
  // Keep focus on the pressed button unless it became disabled (first or last page).
  loadPersons({ focusAfter: () => (pressed.disabled ? other : pressed) });
}

/* ---------- the table ---------- */

function renderPersons() {
  const { items } = paging;
  const admin = isAdmin();
  $('persons-body').replaceChildren(...items.map((person) => personRow(person, admin)));
  const empty = items.length === 0;
  $('persons-table-wrap').hidden = empty;
  $('persons-empty').hidden = !empty;
  $('persons-empty').textContent = admin
    ? 'No persons yet. Add the first one with the form below.'
    : 'No persons yet. An administrator can add some.';
  updatePager();
}

function cell(text, label, className) {
  const td = document.createElement('td');
  td.textContent = text;
  td.dataset.label = label; // shown by CSS as a heading when rows stack on narrow screens
  if (className) td.className = className;
  return td;
}

function personRow(person, admin) {
  const tr = document.createElement('tr');
  tr.dataset.id = person.id;
  const name = cell(person.name, 'Name', 'name');
  const email = cell(person.email, 'Email', 'email');
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

function button(label, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = className;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
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
  try {
    await callApi((token) => api.deletePerson(token, person.id));
    announce(`Deleted ${person.name}.`);
  } catch (err) {
    if (err.handled) return;
    done();
    if (err.status !== 404) {
      announce(`Could not delete ${person.name}. ${err.message}`, 'error');
      return;
    }
    announce(`${person.name} had already been deleted.`);
  }
  onDeleted(person);
  await loadPersons({ focusAfter: () => $('persons-heading') });
}
