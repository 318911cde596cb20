/**
 * fastify gives every request a child logger bound to its id (`reqId`). pino serialises a child's
 * bindings when the child is made, so every request paid for one even at `warn`, the CLI's level,
 * where a request that goes well logs nothing (a few per cent of a GET's CPU: docs/performance.md).
 *
 * `lazyChildLogger` is the app's `childLoggerFactory`: the pino child is made the first time a
 * line at an enabled level is logged through it, and then logs exactly as before (same bindings,
 * same redaction, the request id on every line). A child asked for with its own level or
 * serializers (a route's `logLevel`, `logSerializers`), or of a logger that cannot say which
 * levels are enabled, is made at once as before.
 */
import type { FastifyBaseLogger } from 'fastify'

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const
type Level = (typeof LEVELS)[number]
type Bindings = Parameters<FastifyBaseLogger['child']>[0]
type ChildOptions = Parameters<FastifyBaseLogger['child']>[1]
type LevelCheck = (level: string) => boolean

export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options?: ChildOptions,
): FastifyBaseLogger {
  const isLevelEnabled = (logger as { isLevelEnabled?: unknown }).isLevelEnabled
  if (typeof isLevelEnabled !== 'function' || (options !== undefined && Object.keys(options).length > 0))
    return logger.child(bindings, options)
  const child = new LazyChild(logger, bindings, (level) => (isLevelEnabled as LevelCheck).call(logger, level))
  // Its level methods are made in its static block, one per level.
  return child as unknown as FastifyBaseLogger
}

class LazyChild {
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #enabled: LevelCheck
  #child: FastifyBaseLogger | undefined

  constructor(parent: FastifyBaseLogger, bindings: Bindings, enabled: LevelCheck) {
    this.#parent = parent
    this.#bindings = bindings
    this.#enabled = enabled
  }

  get level(): string {
    return this.#child?.level ?? this.#parent.level
  }

  set level(level: string) {
    this.#real().level = level
  }

  static {
    for (const level of LEVELS)
      Object.defineProperty(this.prototype, level, {
        value(this: LazyChild, ...args: unknown[]): void {
          this.#log(level, args)
        },
        writable: true,
        configurable: true,
      })
  }

  silent(): void {}

  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options)
  }

  #log(level: Level, args: unknown[]): void {
    if (this.#child === undefined && !this.#enabled(level)) return
    ;(this.#real()[level] as (...line: unknown[]) => void)(...args)
  }

  #real(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings)
    return this.#child
  }
}
