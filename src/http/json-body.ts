/**
 * The body parser of the JSON routes (counters, sets): fastify's own JSON parser (which refuses
 * `__proto__` and `constructor.prototype` keys), and nothing else, so any other media type is a 415.
 */
import type { FastifyInstance } from 'fastify'

/** `allowEmpty`: an empty body (even one declared as JSON) reaches the handler as `undefined`. */
export function useJsonBodies(app: FastifyInstance, allowEmpty: boolean): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (allowEmpty && text === '') {
      done(null, undefined)
      return
    }
    parseJson(request, text, done)
  })
}
