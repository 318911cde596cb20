/**
 * Certificates for the TLS tests, made in-process with `selfsigned` (which signs with a CA): a
 * CA, leaf certificates it signs (SANs 127.0.0.1 and localhost unless told otherwise, usable as
 * server and client certificates), and a second, unrelated CA. EC P-256 keys: a few milliseconds
 * each, where RSA 2048 takes a good part of a second. Make them once per test file.
 */
import selfsigned from 'selfsigned'

/** A certificate and its private key (PEM). */
export interface Pem {
  cert: string
  key: string
}

export interface LeafOptions {
  /** The subject's common name (no host-name check reads it when SANs are present). */
  commonName?: string
  /** DNS SANs. Default `['localhost']`. */
  dns?: readonly string[]
  /** IP SANs. Default `['127.0.0.1']`. */
  ips?: readonly string[]
}

const KEY = { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as const

/** A self-signed CA that may sign leaf certificates. */
export async function makeCa(commonName = 'meshkv test CA'): Promise<Pem> {
  const made = await selfsigned.generate([{ name: 'commonName', value: commonName }], {
    ...KEY,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  })
  return { cert: made.cert, key: made.private }
}

/** A leaf certificate signed by `ca`, for TLS servers and clients both. */
export async function makeLeaf(ca: Pem, options: LeafOptions = {}): Promise<Pem> {
  const altNames = [
    ...(options.dns ?? ['localhost']).map((value) => ({ type: 2 as const, value })),
    ...(options.ips ?? ['127.0.0.1']).map((ip) => ({ type: 7 as const, ip })),
  ]
  const made = await selfsigned.generate([{ name: 'commonName', value: options.commonName ?? 'meshkv node' }], {
    ...KEY,
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  })
  return { cert: made.cert, key: made.private }
}

/** What most TLS tests need: the cluster's CA and a leaf of it, another CA and a leaf of that. */
export interface TestPki {
  ca: Pem
  leaf: Pem
  otherCa: Pem
  otherLeaf: Pem
}

export async function makeTestPki(): Promise<TestPki> {
  const [ca, otherCa] = await Promise.all([makeCa('meshkv test CA'), makeCa('unrelated test CA')])
  const [leaf, otherLeaf] = await Promise.all([makeLeaf(ca), makeLeaf(otherCa)])
  return { ca, leaf, otherCa, otherLeaf }
}
