// The person form (admins): adding a person, and editing one picked in the list.

import * as api from './api.js';
import { clearFormErrors, failLocally, reportFormError } from './forms.js';
import { callApi } from './session.js';
import { $, announce, focusElement, setBusy } from './ui.js';
import { loadPersons, rowButton } from './view-persons.js';

const AGE_PROBLEM = 'Age must be a whole number from 0 to 150, or left empty.';

let editingId = null; // the id of the person being edited, null while adding

/** Wires the form's submit, its cancel button and Escape. */
export function wirePersonForm() {
  $('person-form').addEventListener('submit', onPersonSubmit);
  $('person-cancel').addEventListener('click', cancelEdit);
  $('person-form').addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && editingId) cancelEdit();
  });
}

/** Fills the form with the person and switches it to editing. */
export function startEdit(person) {
  const form = $('person-form');
  clearFormErrors(form);
  editingId = person.id;
  form.elements.name.value = person.name;
  form.elements.email.value = person.email;
  form.elements.age.value = person.age === null || person.age === undefined ? '' : String(person.age);
  $('person-form-heading').textContent = `Edit ${person.name}`;
  $('person-submit').textContent = 'Save changes';
  $('person-cancel').hidden = false;
  $('person-editor').classList.add('is-editing');
  focusElement(form.elements.name);
}

/** Empties the form and switches it back to adding. */
export function resetPersonForm() {
  const form = $('person-form');
  form.reset();
  clearFormErrors(form);
  editingId = null;
  $('person-form-heading').textContent = 'Add a person';
  $('person-submit').textContent = 'Add person';
  $('person-cancel').hidden = true;
  $('person-editor').classList.remove('is-editing');
}

/** Resets the form if it is editing this person (who was just deleted). */
export function resetIfEditing(id) {
  if (editingId === id) resetPersonForm();
}

function cancelEdit() {
  const id = editingId;
  resetPersonForm();
  focusElement((id && rowButton(id, 'edit')) || $('persons-heading'));
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
  announce('');
  const { person, problems } = readPersonForm(form);
  if (problems.length) { failLocally(form, problems); return; }

  const id = editingId;
  const send = id
    ? (token) => api.updatePerson(token, id, person)
    : (token) => api.createPerson(token, person);
  const done = setBusy($('person-submit'), id ? 'Saving…' : 'Adding…');
  try {
    await callApi(send);
  } catch (err) {
    done();
    await saveFailed(form, id, person, err);
    return;
  }
  done();
  await (id ? edited(id, person) : added(form, person));
}

async function saveFailed(form, id, person, err) {
  if (err.status === 404 && id) {
    resetPersonForm();
    announce(`${person.name} was deleted in the meantime, so the changes were not saved.`, 'error');
    await loadPersons();
    return;
  }
  reportFormError(form, err, { fallbackField: 'name' });
}

async function edited(id, person) {
  resetPersonForm();
  announce(`Saved changes to ${person.name}.`);
  await loadPersons({ focusAfter: () => rowButton(id, 'edit') || $('persons-heading') });
}

async function added(form, person) {
  form.reset();
  announce(`Added ${person.name}.`);
  focusElement(form.elements.name); // ready for the next one
  await loadPersons();
}
