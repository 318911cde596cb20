/**
 * The session's causal token: the join of every write token this client has seen. Sent with each
 * read, it makes any node wait until it has seen the session's own writes (read-your-writes on
 * any node, even after a failover).
 */
import { decodeCausalToken, encodeCausalToken, vcJoin } from '../clock/index.js'

/** The join of two tokens; either may be absent. Throws `MESHKV_ERR_INVALID_TOKEN` on a malformed one. */
export function joinTokens(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b === undefined ? undefined : encodeCausalToken(decodeCausalToken(b))
  if (b === undefined) return encodeCausalToken(decodeCausalToken(a))
  return encodeCausalToken(vcJoin(decodeCausalToken(a), decodeCausalToken(b)))
}

export class Session {
  #token: string | undefined

  get token(): string | undefined {
    return this.#token
  }

  /**
   * Joins a token a node handed back. A token that does not parse is a node's bug, not the
   * caller's: it is passed over so the write that carried it still succeeds.
   */
  observe(token: string | null | undefined): void {
    if (typeof token !== 'string' || token.length === 0) return
    try {
      this.#token = joinTokens(this.#token, token)
    } catch {
      // Keep the session as it was.
    }
  }

  /** Joins a token a caller handed in; throws `MESHKV_ERR_INVALID_TOKEN` on a malformed one. */
  join(token: string): void {
    this.#token = joinTokens(this.#token, token)
  }

  /** The token a read sends: the session's joined with the caller's `after` (validated here). */
  readToken(after: string | undefined): string | undefined {
    return joinTokens(this.#token, after)
  }
}
