/**
 * The peer protocol: what two meshkv nodes say to each other over one link.
 *
 * Wire format: every frame is one binary WebSocket message holding one MessagePack-encoded
 * `PeerMessage` (below), at most `FRAME_BYTES_MAX` (4 MiB, codec/peer.ts) long. Text frames, undecodable frames
 * and frames of the wrong shape close the link with code 1008 (policy) or 1009 (too big); nothing
 * in them is applied.
 *
 * Handshake (the transport's job, before any message below may pass; see transport/handshake.ts):
 *   acceptor → dialer   challenge { version, clusterId, nodeId, nonce, instance }
 *   dialer   → acceptor hello     { version, clusterId, nodeId, url, nonce, instance, proof = HMAC(secret, "dialer" ‖ acceptor nonce ‖ dialer id ‖ acceptor id) }
 *   acceptor → dialer   welcome   { proof = HMAC(secret, "acceptor" ‖ dialer nonce ‖ acceptor id ‖ dialer id) }
 * Each side checks the other's proof with a constant-time compare and the cluster id for
 * equality; a failure closes the link with 4401 (auth) or 4409 (another cluster). Nonces are
 * fresh random bytes per link, so a recorded handshake cannot be replayed. `instance` is fixed per
 * process: the same node id from another instance is a cloned data directory (close 4009; both
 * processes stop taking writes: seq-guard.ts). `version` is the newest the sender speaks; the link
 * runs the lower of the two (5 to 7: codec/peer.ts `linkVersion`).
 *
 * Replication, once both sides are authenticated (symmetric: each side does all of this):
 *   1. `sync`   { vc, peers }: "this is what I hold on disk (the durable VC, as an ack), and whom
 *               I am linked to". Sent first, then again whenever the link set changes, or when
 *               the receiver must resend (it
 *               dropped changes from a full causal buffer, or refused one); every `sync` restarts
 *               the other side's cursor from this VC.
 *   2. `changes` { changes, ack }: log entries the other side lacks, in causal (LSN) order, many per
 *               frame. The sender streams from a per-peer cursor; catch-up and live streaming are
 *               one loop. It skips changes the receiver is known to have (its VC), and changes
 *               whose origin the receiver is directly linked to (it gets them from there).
 *               Version 6: each change is its bytes in the compact format (codec/change.ts),
 *               the same bytes as in the sender's log, encoded once by the change's origin.
 *               Version 7: the frame is positional (`[1, ack, change, …]`, codec/peer.ts), and
 *               `ack` says a write of the sender waits for acks (`Replicator.expectAcks`).
 *   3. `ack`    { vc }: sent once received changes are fsynced: the receiver's durable VC (as of
 *               its last fsynced batch; one fsync is shared by many commits and acks). Version
 *               6: only the entries that moved since the last ack (acks.ts; the receiver joins
 *               it into what the link said before, `PeerSession.ackedBy`). Version 7:
 *               positional (`[2, id, seq, …]`, raw ids), at once for changes whose frame asked,
 *               else gathered for at most 10 ms (acks.ts). Acks drive write concern, lag
 *               figures and causal stability (garbage collection).
 *               An ack's or sync's claim on origins other than the sender is capped at what the
 *               receiver holds; one on more of the receiver's own changes than it made closes the
 *               link (peers.ts, `checkClaim`).
 *   4. snapshots, when the other side needs log entries this node has purged, or is brand new and
 *      this node holds a long history (`snapshotAfterChanges`, default 10 000). The receiver
 *      consents: it asks only if it needs one by its own store and its last `sync` on the link;
 *      an offer it did not ask for is refused and changes nothing (snapshot-receiver.ts):
 *        sender   `snapshot-needed` { lacks }        the first purged change it lacks, or null (new)
 *        receiver `snapshot-request` {}              consent to one offer (or a `sync`: not needed)
 *        sender   `snapshot-offer` { vc, keys }      states as of vc, read from one store snapshot
 *        receiver `snapshot-reply` { accept }        false while it takes another node's snapshot
 *        sender   `snapshot-chunk` { seq, states }   [space, key, encoded state] in key order (a
 *                                                    large state as parts [space, key, bytes, true]),
 *                                                    at most 4 chunks ahead of the receiver's acks
 *        receiver `snapshot-ack`   { seq }           chunk seq is on its disk (the stage)
 *        sender   `snapshot-end`   { chunks }
 *      The receiver joins the staged states into its own with the types' state-based merges (keys
 *      it holds that the snapshot lacks are joined with the empty state), takes the join of the
 *      clocks, and sends `sync`; the sender streams nothing until that `sync`, then goes on from
 *      it by log shipping. A link lost midway drops the staged states.
 *
 * Garbage collection (docs/protocol.md, "Garbage collection") needs nothing more on the wire: each node keeps the
 * recent acks of every member; the stable cut is the pointwise minimum over members of the newest
 * ack whose own entry this node has applied (and of its own VC). Tombstones at or below it are
 * purged, and log entries every member holds. Members come from the replicated member set
 * (replication/membership.ts); a member never heard from holds everything back.
 * A receiver applies a change only when it is next for its origin and its deps are applied; it
 * buffers a bounded number of early changes and drops duplicates, so every node applies every
 * change exactly once, in causal order.
 */
export type { AckMessage, ChangesMessage, PeerMessage, SyncMessage } from '../codec/peer.js'
