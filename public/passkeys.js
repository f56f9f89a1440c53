// The WebAuthn ceremonies in the browser: the service's options (JSON, binary fields in
// base64url) into navigator.credentials, and the credential back into the JSON the service
// reads (PublicKeyCredential.toJSON()'s shape, built by hand for browsers without it).

import { fromBuffer, toBuffer } from './base64url.js';

/** Whether this browser can use passkeys at all. */
export function passkeysSupported() {
  return typeof window.PublicKeyCredential === 'function' && Boolean(navigator.credentials);
}

/** Makes a passkey from POST /users/me/passkeys/options' answer; its credential as JSON. */
export async function createPasskey(options) {
  const publicKey = {
    ...options,
    challenge: toBuffer(options.challenge),
    user: { ...options.user, id: toBuffer(options.user.id) },
    excludeCredentials: (options.excludeCredentials || []).map(descriptor),
  };
  delete publicKey.challenge_id;
  const credential = await navigator.credentials.create({ publicKey });
  const response = credential.response;
  return {
    id: credential.id,
    rawId: fromBuffer(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: fromBuffer(response.clientDataJSON),
      attestationObject: fromBuffer(response.attestationObject),
      transports: typeof response.getTransports === 'function' ? response.getTransports() : [],
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
  };
}

/** Signs POST /auth/passkey/options' challenge with a passkey; the assertion as JSON. */
export async function getPasskey(options) {
  const publicKey = {
    ...options,
    challenge: toBuffer(options.challenge),
    allowCredentials: (options.allowCredentials || []).map(descriptor),
  };
  const credential = await navigator.credentials.get({ publicKey });
  const response = credential.response;
  return {
    id: credential.id,
    rawId: fromBuffer(credential.rawId),
    type: credential.type,
    response: {
      clientDataJSON: fromBuffer(response.clientDataJSON),
      authenticatorData: fromBuffer(response.authenticatorData),
      signature: fromBuffer(response.signature),
      userHandle: response.userHandle ? fromBuffer(response.userHandle) : undefined,
    },
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
  };
}

/** What the person is told when the browser's passkey prompt ended without a credential. */
export function passkeyFailure(err) {
  if (err && err.name === 'NotAllowedError') return 'No passkey was used: the prompt was closed or timed out.';
  if (err && err.name === 'InvalidStateError') return 'This device already holds a passkey of your account.';
  if (err && err.name === 'SecurityError') return 'This address cannot use passkeys (they need the service\'s own host name).';
  return `The passkey did not work${err && err.message ? `: ${err.message}` : '.'}`;
}

function descriptor(item) {
  return { ...item, id: toBuffer(item.id) };
}
