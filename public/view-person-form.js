// The person form (admins), in a dialog over the list so that the place in the list is kept:
// "Add person" in the list's header opens it empty, a row's Edit opens it filled.

import * as api from './api.js';
import { clearFormErrors, failLocally, reportFormError } from './forms.js';
import { callApi } from './session.js';
import { $, focusElement, setBusy, toast } from './ui.js';
import { refreshPersons, rowButton, showNewest } from './view-persons.js';

const AGE_PROBLEM = 'Age must be a whole number from 0 to 150, or left empty.';

let editingId = null; // the id of the person being edited, null while adding
let returnFocus = null; // where the focus goes back when the dialog closes unsaved

/** Wires the "Add person" button, the form's submit and its cancel button. */
export function wirePersonForm() {
  $('add-person').addEventListener('click', startAdd);
  $('person-form').addEventListener('submit', onPersonSubmit);
  $('person-cancel').addEventListener('click', () => $('person-dialog').close());
  // Escape closes a modal dialog by itself; every way of closing ends up here.
  $('person-dialog').addEventListener('close', () => {
    const target = returnFocus;
    resetPersonForm();
    focusElement(target);
  });
}

/** Opens the empty form for a new person. */
export function startAdd() {
  resetPersonForm();
  returnFocus = $('add-person');
  open();
}

/** Opens the form filled with the person, to edit them. */
export function startEdit(person) {
  resetPersonForm();
  const form = $('person-form');
  editingId = person.id;
  returnFocus = rowButton(person.id, 'edit');
  form.elements.name.value = person.name;
  form.elements.email.value = person.email;
  form.elements.age.value = person.age === null || person.age === undefined ? '' : String(person.age);
  $('person-form-heading').textContent = `Edit ${person.name}`;
  $('person-submit').textContent = 'Save changes';
  open();
}

/** Empties the form and switches it back to adding (also when the person logs out). */
export function resetPersonForm() {
  const form = $('person-form');
  form.reset();
  clearFormErrors(form);
  editingId = null;
  returnFocus = null;
  $('person-form-heading').textContent = 'Add a person';
  $('person-submit').textContent = 'Add person';
  if ($('person-dialog').open) $('person-dialog').close();
}

function open() {
  $('person-dialog').showModal();
  focusElement($('person-form').elements.name);
}

// Closes the dialog after a save; the list then decides where the focus goes.
function closeSaved() {
  returnFocus = null;
  $('person-dialog').close();
}

// Reads and checks the form; the browser's own validity catches what .value hides.
function readPersonForm(form) {
  const problems = [];
  const name = form.elements.name.value.trim();
  const emailInput = form.elements.email;
  const email = emailInput.value.trim();
  const ageInput = form.elements.age;
  let age = null;
  if (!name) problems.push({ field: 'name', message: 'Enter a name.' });
  if (!email) problems.push({ field: 'email', message: 'Enter an email address.' });
  else if (emailInput.validity.typeMismatch) problems.push({ field: 'email', message: 'Enter an email address like name@example.org.' });
  if (ageInput.validity.badInput) {
    problems.push({ field: 'age', message: AGE_PROBLEM });
  } else if (ageInput.value !== '') {
    age = Number(ageInput.value);
    if (!Number.isInteger(age) || age < 0 || age > 150) problems.push({ field: 'age', message: AGE_PROBLEM });
  }
  return { person: { name, email, age }, problems };
}

async function onPersonSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearFormErrors(form);
  const { person, problems } = readPersonForm(form);
  if (problems.length) { failLocally(form, problems); return; }

  const id = editingId;
  const send = id
    ? (token) => api.updatePerson(token, id, person)
    : (token) => api.createPerson(token, person);
  const done = setBusy($('person-submit'), id ? 'Saving…' : 'Adding…');
  let saved;
  try {
    saved = await callApi(send);
  } catch (err) {
    done();
    await saveFailed(form, id, person, err);
    return;
  }
  done();
  closeSaved();
  await (id ? edited(id, person) : added(saved, person));
}

async function saveFailed(form, id, person, err) {
  if (err.status === 404 && id) {
    closeSaved();
    toast(`${person.name} was deleted in the meantime, so the changes were not saved.`, 'error');
    await refreshPersons({ focusAfter: () => $('persons-heading') });
    return;
  }
  reportFormError(form, err, { fallbackField: 'name' });
}

async function edited(id, person) {
  toast(`Saved changes to ${person.name}.`);
  await refreshPersons({ markId: id, focusAfter: () => rowButton(id, 'edit') || $('persons-heading') });
}

// Newest first, a new person is the first row of page 1: show it there, marked.
async function added(saved, person) {
  toast(`Added ${person.name}.`);
  const id = saved && saved.id;
  await showNewest({ markId: id, focusAfter: () => rowButton(id, 'edit') || $('add-person') });
}
