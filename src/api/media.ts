/** Content types: how meshkv tells JSON, text and bytes apart, everywhere it has to. */

export const JSON_TYPE = 'application/json'
export const TEXT_TYPE = 'text/plain; charset=utf-8'
export const BYTES_TYPE = 'application/octet-stream'

/** The media type without parameters, lower case (`Application/JSON; charset=x` → `application/json`). */
export function essenceOf(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase()
}

/** `application/json` and every `+json` type. */
export function isJsonType(contentType: string): boolean {
  const essence = essenceOf(contentType)
  return essence === 'application/json' || essence.endsWith('+json')
}

/** Every `text/*` type. */
export function isTextType(contentType: string): boolean {
  return essenceOf(contentType).startsWith('text/')
}
