/**
 * What replication needs of a peer link. The transport's `PeerLink` has this shape; replication
 * states it here so it never imports the transport.
 */
import type { NodeId } from '../clock/index.js'
import type { PeerMessage } from '../codec/peer.js'

export interface PeerLinkLike {
  readonly nodeId: NodeId
  readonly url: string | null
  readonly direction: 'dialed' | 'accepted'
  readonly closed: boolean
  send(message: PeerMessage): boolean
  drained(): Promise<void>
  onMessage(listener: (message: PeerMessage) => void): void
  onClose(listener: (code: number, reason: string) => void): void
  close(code?: number, reason?: string): void
}
