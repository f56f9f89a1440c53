// tokenauth browser client: plain ES2020, no dependencies, no build step.
// Runs under a strict CSP, so it never uses innerHTML, inline styles or eval:
// the DOM is built with createElement/textContent and shown or hidden with `hidden`.
'use strict';

(() => {
  const REFRESH_KEY = 'tokenauth.refresh_token';
  const SLOW_MS = 300; // show "loading" only when an answer is slow enough to notice
  const ADMIN_ROLE = 'admin';

  // The access token lives only in this variable: a page reload or a closed tab forgets it.
  const state = {
    accessToken: null,
    user: null,
    refreshing: null, // the one refresh in flight, shared so a rotated token is used once
    persons: { limit: 10, cursor: null, previous: [], next: null, items: [], seq: 0 },
    editingId: null,
    loadingTimer: 0,
  };

  const $ = (id) => document.getElementById(id);

  /* ---------- storage: sessionStorage can throw when disabled, so wrap it ---------- */

  const storage = {
    get() {
      try { return window.sessionStorage.getItem(REFRESH_KEY); } catch { return null; }
    },
    set(value) {
      try { window.sessionStorage.setItem(REFRESH_KEY, value); } catch { /* memory-only session */ }
    },
    clear() {
      try { window.sessionStorage.removeItem(REFRESH_KEY); } catch { /* nothing stored */ }
    },
  };

  /* ---------- talking to the service ---------- */

  class ApiError extends Error {
    constructor(message, { status = 0, code = null, fields = [], retryAfter = null, handled = false } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields;
      this.retryAfter = retryAfter;
      this.handled = handled; // true when the UI already reacted (e.g. the session ended)
    }
  }

  async function request(method, path, { body, token } = {}) {
    const headers = { Accept: 'application/json, application/problem+json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch {
      throw new ApiError('Could not reach the service. Check your connection and try again.');
    }
    const data = await readJson(response);
    if (response.ok) return data;
    throw toApiError(response, data);
  }

  async function readJson(response) {
    const text = await response.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch { return null; } // e.g. an HTML page from a proxy
  }

  function toApiError(response, data) {
    const retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
    const challenge = response.headers.get('WWW-Authenticate') || '';
    const fromChallenge = /error="([^"]*)"/.exec(challenge);
    const code = (data && typeof data.error === 'string' && data.error) || (fromChallenge && fromChallenge[1]) || null;
    const fields = data && Array.isArray(data.errors)
      ? data.errors
        .filter((e) => e && typeof e.message === 'string')
        .map((e) => ({ field: fieldName(e.field), message: e.message }))
      : [];
    const message = describeFailure(response.status, data, code, retryAfter);
    return new ApiError(message, { status: response.status, code, fields, retryAfter });
  }

  // Field names may come as "age", "/age" or "body.age": keep the last segment.
  function fieldName(raw) {
    if (typeof raw !== 'string') return '';
    const parts = raw.split(/[./]/).filter(Boolean);
    return parts.length ? parts[parts.length - 1] : '';
  }

  // Retry-After is either seconds or an HTTP date (RFC 9110 §10.2.3).
  function parseRetryAfter(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Number(value.trim());
    const when = Date.parse(value);
    return Number.isNaN(when) ? null : Math.max(0, Math.ceil((when - Date.now()) / 1000));
  }

  function humanWait(seconds) {
    if (seconds === null) return 'a little while';
    if (seconds < 2) return 'a moment';
    if (seconds < 90) return `${seconds} seconds`;
    const minutes = Math.ceil(seconds / 60);
    if (minutes < 90) return `${minutes} minutes`;
    return `${Math.ceil(minutes / 60)} hours`;
  }

  const OAUTH_MESSAGES = {
    invalid_grant: 'Wrong username or password.',
    invalid_request: 'The service could not read that request.',
    invalid_client: 'This client is not allowed to sign in.',
    unsupported_grant_type: 'This way of signing in is not supported by the service.',
  };

  // Turns any failure into a sentence a person can act on, never a bare status code.
  function describeFailure(status, data, code, retryAfter) {
    if (status === 429) return `Too many attempts. Please wait ${humanWait(retryAfter)} and try again.`;
    if (status === 503) return `The service is temporarily unavailable. Please try again in ${humanWait(retryAfter)}.`;
    if (status >= 500) return 'The service ran into a problem. Please try again later.';
    if (status === 413) return 'That is more data than the service accepts.';
    if (status === 403) return 'Only administrators can do that.';
    if (status === 401) return 'Your session has ended. Please log in again.';
    if (code && OAUTH_MESSAGES[code]) return OAUTH_MESSAGES[code];
    if (data && typeof data.error_description === 'string' && data.error_description) return data.error_description;
    if (data && Array.isArray(data.errors) && data.errors.length) return 'Please correct the highlighted fields.';
    if (data && typeof data.detail === 'string' && data.detail) return sentence(data.detail);
    if (data && typeof data.title === 'string' && data.title) return sentence(data.title);
    if (status === 404) return 'That item no longer exists.';
    return 'The service gave an unexpected answer. Please try again.';
  }

  function sentence(text) {
    const trimmed = text.trim();
    const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
    return /[.!?]$/.test(capital) ? capital : `${capital}.`;
  }

  /* ---------- tokens and the session ---------- */

  function saveTokens(tokens) {
    state.accessToken = tokens.access_token;
    if (tokens.refresh_token) storage.set(tokens.refresh_token);
  }

  function forgetSession() {
    state.accessToken = null;
    state.user = null;
    state.refreshing = null;
    storage.clear();
  }

  // Calls a protected route; on 401 refreshes once and retries, as RFC 6750 clients do.
  async function callApi(method, path, body) {
    try {
      return await request(method, path, { body, token: state.accessToken });
    } catch (err) {
      if (err.status !== 401) throw err;
    }
    await refreshAccessToken();
    try {
      return await request(method, path, { body, token: state.accessToken });
    } catch (err) {
      if (err.status === 401) throw sessionLost('Your session has ended. Please log in again.');
      throw err;
    }
  }

  function refreshAccessToken() {
    // Refresh tokens rotate and a reused one revokes the whole session: never send two at once.
    if (!state.refreshing) {
      state.refreshing = exchangeRefreshToken().finally(() => { state.refreshing = null; });
    }
    return state.refreshing;
  }

  async function exchangeRefreshToken() {
    const refreshToken = storage.get();
    if (!refreshToken) throw sessionLost('Your session has ended. Please log in again.');
    try {
      saveTokens(await request('POST', '/auth/token', {
        body: { grant_type: 'refresh_token', refresh_token: refreshToken },
      }));
    } catch (err) {
      // 400 invalid_grant: expired, revoked or reused; anything else (offline, 503) may pass.
      if (err.status === 400 || err.status === 401) throw sessionLost('Your session has ended. Please log in again.');
      throw err;
    }
  }

  // The session is over: clear it, show the login form with a reason, and tell callers to stop.
  function sessionLost(message) {
    forgetSession();
    showLoggedOut();
    announce(message, 'error');
    focusElement($('login-username'));
    return new ApiError(message, { status: 401, handled: true });
  }

  async function logIn(username, password) {
    saveTokens(await request('POST', '/auth/token', {
      body: { grant_type: 'password', username, password },
    }));
    await enterApp();
  }

  async function enterApp() {
    state.user = await callApi('GET', '/users/me');
    showLoggedIn();
    focusElement($('app-heading'));
    resetPaging();
    await loadPersons();
  }

  async function logOut() {
    const button = $('logout-button');
    const done = setBusy(button, 'Logging out…');
    const accessToken = state.accessToken;
    const refreshToken = storage.get();
    let unreachable = false;
    // Logout ends the session by its id; revoke also covers an access token that already expired.
    if (accessToken) {
      try { await request('POST', '/auth/logout', { token: accessToken }); } catch (err) { unreachable ||= isTransient(err); }
    }
    if (refreshToken) {
      try {
        await request('POST', '/auth/revoke', { body: { token: refreshToken, token_type_hint: 'refresh_token' } });
      } catch (err) { unreachable ||= isTransient(err); }
    }
    done();
    forgetSession();
    showLoggedOut();
    announce(unreachable
      ? 'You are logged out in this tab, but the service could not be reached to end the session; it will expire on its own.'
      : 'You are logged out.', unreachable ? 'error' : 'info');
    focusElement($('auth-heading'));
  }

  function isTransient(err) {
    return err.status === 0 || err.status === 429 || err.status >= 500;
  }

  /* ---------- messages and focus ---------- */

  function announce(message, kind = 'info') {
    const status = $('status');
    const alert = $('alert');
    status.textContent = '';
    alert.textContent = '';
    if (!message) return;
    (kind === 'error' ? alert : status).textContent = message;
  }

  function focusElement(el) {
    if (!el) return;
    // preventScroll is off on purpose: the focused thing should come into view.
    el.focus();
  }

  function setBusy(button, label) {
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

  // Keeps a button disabled for Retry-After seconds, so a person does not hammer a throttled
  // route; the login throttle counts per username, so typing another name lifts the wait.
  function holdOff(button, seconds, liftOn = null) {
    if (!seconds) return;
    button.disabled = true;
    const lift = () => { button.disabled = false; };
    const timer = window.setTimeout(lift, Math.min(seconds, 3600) * 1000);
    if (liftOn) {
      liftOn.addEventListener('input', () => { window.clearTimeout(timer); lift(); }, { once: true });
    }
  }

  /* ---------- forms ---------- */

  function clearFormErrors(form) {
    form.querySelectorAll('[data-error-for]').forEach((el) => { el.textContent = ''; });
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    formAlert(form, '');
  }

  function formAlert(form, message) {
    const box = form.querySelector('[data-form-alert]');
    if (box) box.textContent = message;
  }

  const FIELD_NAMES = {
    username: 'Username', password: 'Password', confirm: 'Confirmation',
    name: 'Name', email: 'Email', age: 'Age',
  };

  // The service says "must be at least 15 characters"; the page says "Password must be ...".
  function readable(field, message) {
    const text = /^[a-z]/.test(message) && FIELD_NAMES[field] ? `${FIELD_NAMES[field]} ${message}` : message;
    return sentence(text);
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

  // One place that turns a failed submit into inline errors, a form message and a focus move.
  function reportFormError(form, err, { fallbackField = null, summary = null } = {}) {
    if (err.handled) return;
    const { first, stray } = showFieldErrors(form, err.fields);
    const text = [summary || err.message, ...stray].join(' ');
    formAlert(form, text);
    focusElement(first || (fallbackField && form.elements.namedItem(fallbackField)) || form.querySelector('[data-form-alert]'));
  }

  function failLocally(form, problems) {
    const { first } = showFieldErrors(form, problems);
    formAlert(form, problems.length === 1 ? problems[0].message : 'Please correct the highlighted fields.');
    focusElement(first);
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    clearFormErrors(form);
    announce('');
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value; // never trim a password: spaces count
    const problems = [];
    if (!username) problems.push({ field: 'username', message: 'Enter your username.' });
    if (!password) problems.push({ field: 'password', message: 'Enter your password.' });
    if (problems.length) { failLocally(form, problems); return; }

    const submit = form.querySelector('[type="submit"]');
    const done = setBusy(submit, 'Logging in…');
    try {
      await logIn(username, password);
      form.reset();
      done();
    } catch (err) {
      done();
      if (err.status === 400 && err.code === 'invalid_grant') {
        form.elements.password.value = '';
        reportFormError(form, err, { fallbackField: 'password' });
      } else {
        reportFormError(form, err, { fallbackField: 'username' });
      }
      if (err.status === 429) holdOff(submit, err.retryAfter, form.elements.username);
    }
  }

  function validateRegistration(username, password, confirm) {
    const problems = [];
    if (!username) problems.push({ field: 'username', message: 'Choose a username.' });
    if (!password) problems.push({ field: 'password', message: 'Choose a password.' });
    if (!confirm) {
      problems.push({ field: 'confirm', message: 'Type the password a second time.' });
    } else if (password.normalize('NFC') !== confirm.normalize('NFC')) {
      // Compared after NFC, as the service compares them: "é" typed two ways is one password.
      problems.push({ field: 'confirm', message: 'The passwords do not match. Type the same password in both fields.' });
    }
    return problems;
  }

  async function onRegisterSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    clearFormErrors(form);
    announce('');
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const confirm = form.elements.confirm.value;
    const problems = validateRegistration(username, password, confirm);
    if (problems.length) { failLocally(form, problems); return; }

    const submit = form.querySelector('[type="submit"]');
    const done = setBusy(submit, 'Creating account…');
    try {
      await request('POST', '/users', { body: { username, password } });
    } catch (err) {
      done();
      if (err.status === 409) {
        // The service names the field; the sentence is the client's, friendlier than its message.
        const fields = [{ field: 'username', message: 'That username is taken. Choose another one.' }];
        reportFormError(form, Object.assign(err, { fields }), { summary: 'That username is taken.' });
      } else {
        reportFormError(form, err, { fallbackField: 'username' });
      }
      if (err.status === 429) holdOff(submit, err.retryAfter);
      return;
    }
    // The account exists: sign straight in with the same credentials.
    try {
      await logIn(username, password);
      form.reset();
      updatePasswordCount();
      announce(`Account created. Welcome, ${username}.`);
    } catch (err) {
      if (!err.handled) {
        form.reset();
        updatePasswordCount();
        $('login-username').value = username;
        formAlert($('login-form'), `Your account was created, but logging in failed: ${err.message}`);
        focusElement($('login-password'));
      }
    } finally {
      done();
    }
  }

  function updatePasswordCount() {
    // Code points, as the service counts them: an emoji is one character, not two.
    const count = [...$('register-password').value.normalize('NFC')].length;
    $('register-password-count').textContent = count === 1 ? '1 character' : `${count} characters`;
  }

  function wirePasswordToggles() {
    document.querySelectorAll('[data-show-passwords]').forEach((box) => {
      box.addEventListener('change', () => {
        for (const id of box.dataset.showPasswords.split(' ')) {
          $(id).type = box.checked ? 'text' : 'password';
        }
      });
    });
  }

  /* ---------- views ---------- */

  function isAdmin() {
    return Boolean(state.user && Array.isArray(state.user.roles) && state.user.roles.includes(ADMIN_ROLE));
  }

  function showView(name) {
    $('boot-view').hidden = name !== 'boot';
    $('auth-view').hidden = name !== 'auth';
    $('app-view').hidden = name !== 'app';
    $('session-bar').hidden = name !== 'app';
  }

  function showLoggedOut() {
    resetPersonForm();
    $('persons-body').replaceChildren();
    showView('auth');
    document.title = 'Log in · tokenauth';
  }

  function showLoggedIn() {
    const { username } = state.user;
    const roles = Array.isArray(state.user.roles) ? state.user.roles : [];
    $('session-user').textContent = username;
    $('session-roles').replaceChildren(...roles.map(roleBadge));
    $('app-heading').textContent = `Welcome, ${username}`;
    $('user-summary').textContent = roles.length
      ? `You are logged in as ${username} with the role${roles.length > 1 ? 's' : ''} ${roles.join(', ')}.`
      : `You are logged in as ${username}, with no special roles.`;
    document.querySelectorAll('[data-admin-only]').forEach((el) => { el.hidden = !isAdmin(); });
    showView('app');
    document.title = `${username} · tokenauth`;
  }

  function roleBadge(role) {
    const badge = document.createElement('span');
    badge.className = 'role';
    badge.textContent = role;
    return badge;
  }

  /* ---------- persons: paging over the cursor ---------- */

  function resetPaging() {
    const p = state.persons;
    p.cursor = null;
    p.previous = [];
    p.next = null;
  }

  // Loads the page at the current cursor; `seq` drops answers that a newer request overtook.
  async function loadPersons({ focusAfter = null } = {}) {
    const p = state.persons;
    const seq = ++p.seq;
    const params = new URLSearchParams({ limit: String(p.limit) });
    if (p.cursor) params.set('cursor', p.cursor);
    const stopLoading = startLoading();
    try {
      const page = await callApi('GET', `/persons?${params}`);
      if (seq !== p.seq) return;
      p.items = Array.isArray(page.items) ? page.items : [];
      p.next = page.next_cursor || null;
      if (!p.items.length && p.previous.length) {
        // The last person of this page went away: step back rather than show an empty page.
        p.cursor = p.previous.pop();
        stopLoading();
        await loadPersons({ focusAfter });
        return;
      }
      renderPersons();
      if (focusAfter) focusElement(focusAfter());
    } catch (err) {
      if (seq === p.seq && !err.handled) announce(`Could not load persons. ${err.message}`, 'error');
    } finally {
      if (seq === p.seq) stopLoading();
    }
  }

  function startLoading() {
    const region = $('persons');
    region.setAttribute('aria-busy', 'true');
    $('prev-page').disabled = true;
    $('next-page').disabled = true;
    // One timer for all loads: a newer load cancels the older one's pending "loading" notice.
    window.clearTimeout(state.loadingTimer);
    state.loadingTimer = window.setTimeout(() => {
      $('persons-loading').hidden = false;
      $('persons-table-wrap').classList.add('is-loading');
    }, SLOW_MS);
    return () => {
      window.clearTimeout(state.loadingTimer);
      region.removeAttribute('aria-busy');
      $('persons-loading').hidden = true;
      $('persons-table-wrap').classList.remove('is-loading');
      updatePager();
    };
  }

  function updatePager() {
    const p = state.persons;
    $('prev-page').disabled = p.previous.length === 0;
    $('next-page').disabled = !p.next;
    const page = p.previous.length + 1;
    const count = p.items.length;
    $('page-info').textContent = count
      ? `Page ${page} · ${count} ${count === 1 ? 'person' : 'persons'}`
      : (page > 1 ? `Page ${page}` : '');
  }

  function renderPersons() {
    const { items } = state.persons;
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
    const edit = button('Edit', 'button button-small button-secondary', () => startEdit(person));
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
      await callApi('DELETE', `/persons/${encodeURIComponent(person.id)}`);
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
    if (state.editingId === person.id) resetPersonForm();
    await loadPersons({ focusAfter: () => $('persons-heading') });
  }

  function changePage(direction) {
    const p = state.persons;
    if (direction === 'next' && p.next) {
      p.previous.push(p.cursor);
      p.cursor = p.next;
    } else if (direction === 'previous' && p.previous.length) {
      p.cursor = p.previous.pop();
    } else {
      return;
    }
    announce('');
    const pressed = direction === 'next' ? $('next-page') : $('prev-page');
    const other = direction === 'next' ? $('prev-page') : $('next-page');
    // Keep focus on the pressed button unless it became disabled (first or last page).
    loadPersons({ focusAfter: () => (pressed.disabled ? other : pressed) });
  }

  /* ---------- persons: add and edit (admins) ---------- */

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
      problems.push({ field: 'age', message: 'Age must be a whole number from 0 to 150, or left empty.' });
    } else if (ageInput.value !== '') {
      age = Number(ageInput.value);
      if (!Number.isInteger(age) || age < 0 || age > 150) {
        problems.push({ field: 'age', message: 'Age must be a whole number from 0 to 150, or left empty.' });
      }
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

    const editingId = state.editingId;
    const submit = $('person-submit');
    const done = setBusy(submit, editingId ? 'Saving…' : 'Adding…');
    try {
      if (editingId) {
        await callApi('PATCH', `/persons/${encodeURIComponent(editingId)}`, person);
      } else {
        await callApi('POST', '/persons', person);
      }
    } catch (err) {
      done();
      if (err.status === 404 && editingId) {
        resetPersonForm();
        announce(`${person.name} was deleted in the meantime, so the changes were not saved.`, 'error');
        await loadPersons();
        return;
      }
      reportFormError(form, err, { fallbackField: 'name' });
      return;
    }
    done();
    if (editingId) {
      resetPersonForm();
      announce(`Saved changes to ${person.name}.`);
      await loadPersons({ focusAfter: () => rowButton(editingId, 'edit') || $('persons-heading') });
    } else {
      form.reset();
      announce(`Added ${person.name}.`);
      focusElement(form.elements.name); // ready for the next one
      await loadPersons();
    }
  }

  function rowButton(id, action) {
    const row = [...$('persons-body').rows].find((tr) => tr.dataset.id === id);
    return row ? row.querySelector(`[data-action="${action}"]`) : null;
  }

  function startEdit(person) {
    const form = $('person-form');
    clearFormErrors(form);
    state.editingId = person.id;
    form.elements.name.value = person.name;
    form.elements.email.value = person.email;
    form.elements.age.value = person.age === null || person.age === undefined ? '' : String(person.age);
    $('person-form-heading').textContent = `Edit ${person.name}`;
    $('person-submit').textContent = 'Save changes';
    $('person-cancel').hidden = false;
    $('person-editor').classList.add('is-editing');
    focusElement(form.elements.name);
  }

  function resetPersonForm() {
    const form = $('person-form');
    form.reset();
    clearFormErrors(form);
    state.editingId = null;
    $('person-form-heading').textContent = 'Add a person';
    $('person-submit').textContent = 'Add person';
    $('person-cancel').hidden = true;
    $('person-editor').classList.remove('is-editing');
  }

  function cancelEdit() {
    const id = state.editingId;
    resetPersonForm();
    focusElement((id && rowButton(id, 'edit')) || $('persons-heading'));
  }

  /* ---------- start ---------- */

  function wireEvents() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    $('register-form').addEventListener('submit', onRegisterSubmit);
    $('register-password').addEventListener('input', updatePasswordCount);
    $('person-form').addEventListener('submit', onPersonSubmit);
    $('person-cancel').addEventListener('click', cancelEdit);
    $('person-form').addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && state.editingId) cancelEdit();
    });
    $('logout-button').addEventListener('click', logOut);
    $('next-page').addEventListener('click', () => changePage('next'));
    $('prev-page').addEventListener('click', () => changePage('previous'));
    $('page-size').addEventListener('change', (event) => {
      state.persons.limit = Number(event.target.value);
      resetPaging();
      loadPersons();
    });
    wirePasswordToggles();
  }

  // A refresh token in this tab's sessionStorage means a reload: restore the session from it.
  async function restoreSession() {
    try {
      await refreshAccessToken();
      await enterApp();
    } catch (err) {
      if (err.handled) return;
      showLoggedOut();
      announce(`Could not restore your session. ${err.message}`, 'error');
    }
  }

  function start() {
    wireEvents();
    state.persons.limit = Number($('page-size').value);
    if (storage.get()) {
      restoreSession();
    } else {
      showLoggedOut();
    }
  }

  start();
})();
