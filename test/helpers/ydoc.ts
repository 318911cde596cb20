/**
 * A Yjs update as a client would send it: a fresh document of client `client` whose `Y.Text`
 * `body` holds `text` and, given a `title`, whose `Y.Map` `meta` has it. Shared by the document
 * tests of every face (node, client, kvctl, cluster).
 */
import * as Y from 'yjs'

export function docEdit(client: number, text: string, title?: string): Uint8Array {
  const doc = new Y.Doc()
  doc.clientID = client
  doc.getText('body').insert(0, text)
  if (title !== undefined) doc.getMap('meta').set('title', title)
  return Y.encodeStateAsUpdate(doc)
}
