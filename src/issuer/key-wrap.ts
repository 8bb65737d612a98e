/**
 * Wrapping of private signing keys at rest with AES-256-GCM under SIGNING_KEY_KEK.
 *
 * The KEK secret is any high-entropy text; HKDF-SHA256 turns it into the AES key and, with a
 * different label, into a short public identifier stored beside each wrapped key. The identifier
 * lets the key authority tell "wrapped under another KEK" (an operator mistake with a clear
 * message) from "tampered" before it ever tries to decrypt, so a wrong KEK can never produce
 * garbage keys. The kid is the AES-GCM additional data: a wrapped key cannot be moved to another
 * record.
 */
import type { JWK } from 'jose';
import { base64url } from 'jose';
import { IssuerError } from './errors.js';

export type StoredPrivateKey = { format: 'jwk'; jwk: JWK } | { format: 'wrapped'; kekId: string; iv: string; ciphertext: string };

export interface Kek {
  id: string;
  key: CryptoKey;
}

const HKDF_SALT = new TextEncoder().encode('credential-issuer/signing-key-kek/v1');
const GCM_IV_BYTES = 12; // the size AES-GCM is specified for (NIST SP 800-38D)

async function hkdf(secret: string, info: string, bits: number): Promise<ArrayBuffer> {
  const ikm = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret), 'HKDF', false, ['deriveBits']);
  return crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: HKDF_SALT, info: new TextEncoder().encode(info) }, ikm, bits);
}

/** Derives the AES key and its public identifier from the SIGNING_KEY_KEK secret. */
export async function deriveKek(secret: string): Promise<Kek> {
  const [raw, id] = await Promise.all([hkdf(secret, 'aes-256-gcm wrap', 256), hkdf(secret, 'key id', 64)]);
  const key = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { id: base64url.encode(new Uint8Array(id)), key };
}

/** Wraps a private JWK under the KEK, or stores it as is when no KEK is configured. */
export async function wrapPrivateKey(jwk: JWK, kek: Kek | undefined): Promise<StoredPrivateKey> {
  if (!kek) return { format: 'jwk', jwk };
  const iv = crypto.getRandomValues(new Uint8Array(GCM_IV_BYTES));
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: new TextEncoder().encode(jwk.kid ?? '') },
    kek.key,
    new TextEncoder().encode(JSON.stringify(jwk)),
  );
  return { format: 'wrapped', kekId: kek.id, iv: base64url.encode(iv), ciphertext: base64url.encode(new Uint8Array(ct)) };
}

/**
 * Checks that a stored key can be opened with the configured KEK without decrypting it:
 * kek_missing when it is wrapped and no KEK is set, kek_mismatch when another KEK wrapped it.
 */
export function checkKekFits(stored: StoredPrivateKey, kek: Kek | undefined): void {
  if (stored.format !== 'wrapped') return;
  if (!kek) {
    throw new IssuerError('kek_missing', 'signing keys are wrapped but SIGNING_KEY_KEK is not set', { option: 'SIGNING_KEY_KEK' });
  }
  if (stored.kekId !== kek.id) {
    throw new IssuerError('kek_mismatch', 'SIGNING_KEY_KEK is not the key that wrapped the stored signing keys', {
      option: 'SIGNING_KEY_KEK',
    });
  }
}

/** Opens a stored private key. */
export async function unwrapPrivateKey(stored: StoredPrivateKey, kid: string, kek: Kek | undefined): Promise<JWK> {
  if (stored.format === 'jwk') return stored.jwk;
  checkKekFits(stored, kek);
  let plain: ArrayBuffer;
  try {
    plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: base64url.decode(stored.iv), additionalData: new TextEncoder().encode(kid) },
      kek!.key,
      base64url.decode(stored.ciphertext),
    );
  } catch {
    // Same KEK identifier but authentication failed: the stored record was altered.
    throw new IssuerError('kek_mismatch', 'a wrapped signing key failed authentication under SIGNING_KEY_KEK', { kid });
  }
  return JSON.parse(new TextDecoder().decode(plain)) as JWK;
}
