/** The slice of a pino logger replication writes to (pino's child loggers fit it). */
export interface Logger {
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
  /** A logger whose lines carry these fields too (pino's `child`). */
  child?(bindings: Record<string, unknown>): Logger
}

export const SILENT_LOGGER: Logger = { info: () => {}, warn: () => {}, error: () => {} }
