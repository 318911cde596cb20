/**
 * Client access: the roles a token may carry and the shapes of tokens as the HTTP API, the client
 * and kvctl show them. A token of role `read` reads, lists and watches; `write` also writes;
 * `admin` does everything, including tokens, members, status, metrics and the digest. A token may
 * be limited to keys (and counter and set names) starting with a prefix.
 */
export const ACCESS_ROLES = ['read', 'write', 'admin'] as const
export type AccessRole = (typeof ACCESS_ROLES)[number]

/** The shortest root token a node takes, in bytes (the CLI and `buildApp` both refuse shorter ones). */
export const ROOT_TOKEN_BYTES_MIN = 16

export function isAccessRole(value: unknown): value is AccessRole {
  return value === 'read' || value === 'write' || value === 'admin'
}

/** A token as `GET /v1/tokens` lists it: never the secret part, which is shown once, at creation. */
export interface TokenInfo {
  /** 16 hex digits; the token's public part, used to revoke it. */
  id: string
  role: AccessRole
  /** Only keys and names starting with this, or null for every key. */
  prefix: string | null
  name: string | null
  /** ISO 8601, from the creating node's clock. */
  createdAt: string
}

/** What `POST /v1/tokens` answers (201): the token itself appears here and nowhere else. */
export interface CreatedToken extends TokenInfo {
  token: string
}

/** PEM material for TLS: a certificate and its key, and the CA peers' certificates must chain to. */
export interface TlsMaterial {
  cert: string | Uint8Array
  key: string | Uint8Array
  /** With a CA, peer links are mutual TLS: each side's certificate must chain to it. */
  ca?: string | Uint8Array
}
