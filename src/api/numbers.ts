/** Checks of numeric settings, shared by the node, its transport, HTTP and the CLIs. */
import { MeshError } from '../errors.js'

/**
 * A positive safe integer setting, or `fallback` when it is not given. A bad value is a
 * configuration error (`MESHKV_ERR_CONFIG`), named after the setting.
 */
export function positiveIntegerSetting(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new MeshError('MESHKV_ERR_CONFIG', `${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}

/** A positive integer written in decimal (a flag or an environment variable); `undefined` if it is not one. */
export function parsePositiveInteger(text: string): number | undefined {
  if (!/^[0-9]{1,16}$/.test(text)) return undefined
  const value = Number(text)
  return Number.isSafeInteger(value) && value >= 1 ? value : undefined
}
