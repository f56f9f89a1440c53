// The smallest single-page app that signs in with tokenauth: oidc-client-ts's redirect flow
// (code, PKCE), the person's name from the ID token, one API call with the access token, and
// RP-initiated logout. It is a public client: no secret, nothing but its registered URIs.

const { InMemoryWebStorage, UserManager, WebStorageStateStore } = globalThis.oidc;

const $ = (id) => document.getElementById(id);
// The page that serves this app also serves /config.json: the provider and the client id.
const config = await (await fetch('/config.json', { cache: 'no-store' })).json();

const manager = new UserManager({
  authority: config.authority,
  client_id: config.client_id,
  redirect_uri: `${location.origin}/callback`,
  post_logout_redirect_uri: `${location.origin}/signed-out`,
  scope: 'openid profile',
  // The provider's pages refuse frames, and a token lives 15 minutes: no silent renew here.
  automaticSilentRenew: false,
  // Tokens stay in this page's memory, never in storage: a new tab signs in again, which
  // single sign-on makes a redirect there and back.
  userStore: new WebStorageStateStore({ store: new InMemoryWebStorage() }),
});

let user = null;

$('sign-in').addEventListener('click', () => manager.signinRedirect());
$('sign-out').addEventListener('click', () => manager.signoutRedirect({ state: 'signed-out' }));
$('ask-api').addEventListener('click', () => askApi());

/** Shows the signed-in person and what the API says of them. */
async function showSignedIn(signedIn) {
  user = signedIn;
  show(`Signed in as ${user.profile.preferred_username}.`, true);
  await askApi();
}

/** Shows the signed-out state with a sentence saying why. */
function show(status, signedIn) {
  $('status').textContent = status;
  $('sign-in').hidden = signedIn;
  $('ask-api').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
  if (!signedIn) {
    $('api-answer').hidden = true;
    $('api-answer').textContent = '';
  }
}

/** GET /users/me with the access token (a CORS request the provider allows for its clients). */
async function askApi() {
  const answer = $('api-answer');
  answer.hidden = false;
  answer.textContent = 'Asking…';
  const response = await fetch(`${config.authority}/users/me`, {
    headers: { Authorization: `Bearer ${user.access_token}` },
    cache: 'no-store',
  });
  if (response.status === 401) {
    // Revoked (signed out elsewhere, access withdrawn) or expired: the token is worthless.
    user = null;
    await manager.removeUser();
    show('tokenauth refused the access token. Sign in again.', false);
    return;
  }
  const me = await response.json();
  answer.textContent = `The API says you are ${me.username} (${me.roles.join(', ')}).`;
}

async function start() {
  try {
    if (location.pathname === '/callback') {
      const signedIn = await manager.signinRedirectCallback();
      history.replaceState(null, '', '/');
      await showSignedIn(signedIn);
      return;
    }
    if (location.pathname === '/signed-out') {
      await manager.signoutRedirectCallback();
      history.replaceState(null, '', '/');
      show('Signed out.', false);
      return;
    }
  } catch (err) {
    history.replaceState(null, '', '/');
    show(`Sign-in failed: ${err.message}`, false);
    return;
  }
  const kept = await manager.getUser();
  if (kept && !kept.expired) await showSignedIn(kept);
  else show('Not signed in.', false);
}

await start();
