/**
 * The cluster page's one script (cluster.html, served at /ui by src/http/ui-cluster.ts). It asks
 * this node's HTTP API once a second (`/v1/status`, `/v1/members`) and on demand (`/v1/kv`), with
 * the token typed into the page (kept in sessionStorage: it lasts as long as the tab and never
 * leaves it but as `Authorization: Bearer`). Without a token it sends no header, which is all a
 * node without auth needs. The charts are SVG polylines drawn here: no library, no build step.
 * Data only ever becomes text nodes and attributes, never HTML, so a key cannot inject markup.
 */
const TOKEN_KEY = 'meshkv.token'
const POLL_MS = 1000
/** A stopped node must show as unreachable, not hang the page. */
const REQUEST_MS = 3000
/** Points kept per chart: two minutes at one a second. */
const SAMPLES = 120
/** The narrowest time window a chart shows, in samples. */
const WINDOW_MIN = 30
const CHART = { width: 380, height: 120, top: 16, bottom: 4 }
/** One colour per peer, in the order the page first sees them; the write rate has its own two. */
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2']
const RATE_COLORS = { all: '#6b7785', own: '#bcbd22' }
const PREVIEW_CHARS = 60
const SVG_NS = 'http://www.w3.org/2000/svg'

const $ = (id) => document.getElementById(id)

/** An element (`svg:` prefix for SVG) with attributes and children; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith('svg:') ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) if (value != null) node.setAttribute(name, String(value))
  for (const child of children.flat()) if (child != null) node.append(typeof child === 'object' ? child : String(child))
  return node
}

const number = (n) => (Number.isInteger(n) ? n.toLocaleString('en') : n.toFixed(1))
const millis = (ms) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`)
function duration(ms) {
  const s = Math.floor(ms / 1000)
  if (s < 120) return `${s} s`
  if (s < 7200) return `${Math.floor(s / 60)} min`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

// The API, with the page's token.

const token = () => sessionStorage.getItem(TOKEN_KEY) ?? ''

/** GET `path` as JSON; a refusal or an unreachable node throws an Error that says which, in a line. */
async function api(path) {
  const headers = token() === '' ? {} : { authorization: `Bearer ${token()}` }
  let response
  try {
    response = await fetch(path, { headers, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_MS) })
  } catch (error) {
    throw new Error(`the node did not answer (${error.message})`)
  }
  if (response.ok) return response.json()
  const problem = await response.json().catch(() => ({}))
  const hint = response.status === 401 ? ' (enter a token above)' : ''
  throw new Error(`${response.status} ${problem.code ?? ''}: ${problem.detail ?? response.statusText}${hint}`)
}

function setupToken() {
  const show = () => ($('token-state').textContent = token() === '' ? 'no token' : 'token set for this tab')
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault()
    sessionStorage.setItem(TOKEN_KEY, $('token').value.trim())
    $('token').value = ''
    show()
    void tick()
  })
  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY)
    show()
    void tick()
  })
  show()
}

// What the polls saw: a window of samples per chart line.

const history = { rateAll: [], rateOwn: [], lagChanges: new Map(), lagMs: new Map(), catchUpMax: new Map() }
const colors = new Map()
let previous = null

const colorOf = (nodeId) => {
  if (!colors.has(nodeId)) colors.set(nodeId, COLORS[colors.size % COLORS.length])
  return colors.get(nodeId)
}

function push(series, value) {
  series.push(value)
  if (series.length > SAMPLES) series.shift()
}

/** Adds this poll's figures: write rates from the vector clock's growth, lag per linked-once peer. */
function record(status) {
  const at = performance.now()
  const own = status.vc[status.nodeId] ?? 0
  const all = Object.values(status.vc).reduce((sum, seq) => sum + seq, 0)
  if (previous !== null && previous.nodeId === status.nodeId) {
    const seconds = (at - previous.at) / 1000
    push(history.rateAll, Math.max(0, (all - previous.all) / seconds))
    push(history.rateOwn, Math.max(0, (own - previous.own) / seconds))
  }
  previous = { at, own, all, nodeId: status.nodeId }
  const known = new Set()
  for (const peer of status.peers) {
    if (peer.nodeId === null) continue
    known.add(peer.nodeId)
    for (const [series, value] of [
      [history.lagChanges, peer.lagChanges],
      [history.lagMs, peer.lagMs],
    ]) {
      if (!series.has(peer.nodeId)) series.set(peer.nodeId, [])
      push(series.get(peer.nodeId), value)
    }
    // The largest remaining count seen is the bar's whole: the node reports only what is left.
    const most = Math.max(history.catchUpMax.get(peer.nodeId) ?? 0, peer.catchUpChanges)
    history.catchUpMax.set(peer.nodeId, peer.catchUpChanges === 0 ? 0 : most)
  }
  // A forgotten peer leaves the charts.
  for (const series of [history.lagChanges, history.lagMs, history.catchUpMax])
    for (const nodeId of series.keys()) if (!known.has(nodeId)) series.delete(nodeId)
}

// Drawing.

/**
 * Lines of up to SAMPLES points, one a poll, newest at the right edge, scaled to the largest value
 * shown. The time window grows with the samples (from WINDOW_MIN) so a page just opened fills it.
 */
function drawChart(svg, lines, unit) {
  const { width, height, top, bottom } = CHART
  const max = Math.max(1, ...lines.flatMap((line) => line.values))
  const span = Math.max(WINDOW_MIN, ...lines.map((line) => line.values.length))
  const step = width / (span - 1)
  const y = (value) => (top + (1 - value / max) * (height - top - bottom)).toFixed(1)
  const polylines = lines.map((line) =>
    el('svg:polyline', {
      stroke: line.color,
      'data-series': line.name,
      'data-last': line.values.at(-1),
      points: line.values
        .map((value, i) => `${(width - (line.values.length - 1 - i) * step).toFixed(1)},${y(value)}`)
        .join(' '),
    }),
  )
  svg.replaceChildren(
    el('svg:line', { x1: 0, x2: width, y1: top, y2: top, stroke: 'currentColor', 'stroke-opacity': 0.15 }),
    el('svg:text', { x: 4, y: 12 }, `${number(max)} ${unit}`),
    el('svg:text', { x: width - 4, y: 12, 'text-anchor': 'end' }, `last ${span} s`),
    ...polylines,
  )
}

function renderCharts() {
  const lines = (series) => [...series].map(([nodeId, values]) => ({ name: nodeId, color: colorOf(nodeId), values }))
  drawChart($('chart-lag-changes'), lines(history.lagChanges), 'changes')
  drawChart($('chart-lag-ms'), lines(history.lagMs), 'ms')
  drawChart(
    $('chart-rate'),
    [
      { name: 'all', color: RATE_COLORS.all, values: history.rateAll },
      { name: 'own', color: RATE_COLORS.own, values: history.rateOwn },
    ],
    '/s',
  )
  const [all, own] = [history.rateAll.at(-1) ?? 0, history.rateOwn.at(-1) ?? 0]
  $('rate-now').textContent = `now ${number(all)}/s from all nodes, ${number(own)}/s made here`
  $('legend').replaceChildren(
    ...[...history.lagMs.keys()].map((nodeId) =>
      el('span', {}, el('i', { style: `background:${colorOf(nodeId)}` }), nodeId),
    ),
    el('span', {}, el('i', { style: `background:${RATE_COLORS.all}` }), 'write rate, all nodes'),
    el('span', {}, el('i', { style: `background:${RATE_COLORS.own}` }), 'write rate, made here'),
  )
}

function renderNode(status) {
  $('node-id').textContent = status.nodeId
  const facts = [
    `version ${status.version}`,
    `role ${status.role}`,
    status.ready ? 'ready' : 'not ready',
    `writes ${status.seqGuard.state}`,
    `up ${duration(status.uptimeMs)}`,
    `storage ${status.storage}`,
    `${status.members} members, ${status.linked.length} linked`,
  ]
  $('node-facts').textContent = facts.join(' · ')
}

/** One row per member, this node's view of it joined with its peer figures. */
function renderMembers(status, members) {
  const peers = new Map(status.peers.filter((peer) => peer.nodeId !== null).map((peer) => [peer.nodeId, peer]))
  const rows = members.map((member) => {
    const peer = peers.get(member.nodeId)
    // This node has no link to itself: its state is whether it is ready.
    const state = member.self ? (status.ready ? 'up' : 'catching-up') : member.state
    const figures =
      member.self || peer === undefined
        ? ['—', '—', '—', '—']
        : [
            number(peer.lagChanges),
            millis(peer.lagMs),
            peer.lastSeenMs === null ? 'never' : `${millis(peer.lastSeenMs)} ago`,
            number(peer.catchUpChanges),
          ]
    return el(
      'tr',
      { 'data-node': member.nodeId, 'data-state': state, 'data-self': member.self },
      // The swatch is the peer's colour on the charts; this node has no line there.
      el('td', {}, member.self ? null : el('i', { style: `color:${colorOf(member.nodeId)}` }, '■ '), member.nodeId),
      el('td', {}, member.role),
      el('td', { class: 'state', 'data-state': state }, member.self ? `${state} (this node)` : state),
      figures.map((figure, i) => el('td', { class: ['lag-changes', 'lag-ms', 'last-seen', 'catch-up'][i] }, figure)),
      el('td', {}, member.url ?? ''),
    )
  })
  $('members').tBodies[0].replaceChildren(...rows)
  const unreached = status.peers.filter((peer) => peer.nodeId === null).map((peer) => peer.url)
  $('unreached').textContent = unreached.length === 0 ? '' : `peer URLs not reached yet: ${unreached.join(', ')}`
}

function renderProgress(status) {
  const parts = []
  const { receiving, last } = status.snapshot
  if (receiving !== null)
    parts.push(
      el(
        'p',
        {},
        // The total is the sender's estimate until it has counted the keys (docs/protocol.md, "Snapshots").
        `receiving a snapshot from ${receiving.from}: ${number(receiving.keysReceived)} of ${receiving.keysCounted === false ? 'about ' : ''}${number(receiving.keysTotal)} keys `,
      ),
      el('progress', { id: 'snapshot-progress', value: receiving.keysReceived, max: Math.max(1, receiving.keysTotal) }),
    )
  parts.push(
    el(
      'p',
      {},
      last === null
        ? 'no snapshot received on this run'
        : `last snapshot: ${number(last.keys)} keys from ${last.from} in ${millis(last.ms)}`,
    ),
  )
  for (const peer of status.peers) {
    if (peer.nodeId === null || peer.catchUpChanges === 0) continue
    const whole = history.catchUpMax.get(peer.nodeId) ?? peer.catchUpChanges
    parts.push(
      el('p', {}, `catching up from ${peer.nodeId}: ${number(peer.catchUpChanges)} changes left `),
      el('progress', { value: whole - peer.catchUpChanges, max: whole }),
    )
  }
  if (status.ready) parts.push(el('p', {}, 'caught up: the node is ready'))
  if (status.seqGuard.state !== 'writable')
    parts.push(el('p', { class: 'error' }, `writes ${status.seqGuard.state}: ${status.seqGuard.reason ?? ''}`))
  $('progress').replaceChildren(...parts)
}

const facts = (dl, pairs) =>
  dl.replaceChildren(...pairs.flatMap(([name, value]) => [el('dt', {}, name), el('dd', {}, value)]))

function renderFigures(status) {
  const { gc, replication: r } = status
  facts($('gc'), [
    ['log entries', number(gc.logEntries)],
    ['tombstones', number(gc.tombstones)],
    ['log entries purged', number(gc.logPurged)],
    ['tombstones purged', number(gc.tombstonesPurged)],
    ['passes', number(gc.passes)],
    [
      'stable cut',
      Object.entries(gc.stableCut)
        .map(([id, seq]) => `${id.slice(0, 8)}:${seq}`)
        .join(' ') || '—',
    ],
  ])
  const traffic = Object.entries(status.peerTraffic).map(([peer, t]) => [
    `↔ ${peer}`,
    `${number(t.bytesSent)} B out, ${number(t.bytesReceived)} B in`,
  ])
  facts($('replication'), [
    ['changes sent', number(r.changesSent)],
    ['changes received', number(r.changesReceived)],
    ['changes applied', number(r.changesApplied)],
    ['duplicates', number(r.duplicates)],
    ['refused', number(r.refused)],
    ['causal buffer', `${number(r.buffered)} changes, ${number(r.bufferedBytes)} B`],
    ['snapshots sent / received', `${r.snapshotsSent} / ${r.snapshotsReceived}`],
    ...traffic,
  ])
}

// The poll loop: one poll at a time, the next a second after the last one ended.

let timer
let polling = false

function setConn(state, text) {
  $('conn').dataset.state = state
  $('conn').textContent = text
}

async function poll() {
  let status, members
  try {
    ;[status, members] = await Promise.all([api('/v1/status'), api('/v1/members')])
  } catch (error) {
    setConn('error', error.message)
    return
  }
  setConn('ok', `live: updated ${new Date().toLocaleTimeString()}, every ${POLL_MS / 1000} s`)
  record(status)
  renderNode(status)
  renderMembers(status, members.members)
  renderCharts()
  renderProgress(status)
  renderFigures(status)
}

async function tick() {
  clearTimeout(timer)
  if (polling) return
  polling = true
  try {
    await poll()
  } finally {
    polling = false
    timer = setTimeout(tick, POLL_MS)
  }
}

// The key browser: a prefix, pages through the list API's cursor, a value with its siblings.

const pages = { cursors: [null], at: 0 }
let shownKey = 0

async function listKeys() {
  const query = new URLSearchParams({ limit: $('limit').value })
  if ($('prefix').value !== '') query.set('prefix', $('prefix').value)
  const cursor = pages.cursors[pages.at]
  if (cursor !== null) query.set('cursor', cursor)
  $('list-error').textContent = ''
  let answer
  try {
    answer = await api(`/v1/kv?${query}`)
  } catch (error) {
    $('list-error').textContent = error.message
    return
  }
  pages.cursors.length = pages.at + 1
  pages.cursors.push(answer.next)
  $('keys').tBodies[0].replaceChildren(...answer.items.map(keyRow))
  $('prev').disabled = pages.at === 0
  $('next').disabled = answer.next === null
  $('page-info').textContent =
    `page ${pages.at + 1}: ${answer.items.length} keys${answer.next === null ? ', the last' : ''}`
}

function preview(item) {
  if ('valueBase64' in item) return `${Math.floor((item.valueBase64.length * 3) / 4)} bytes`
  const text = typeof item.value === 'string' ? item.value : JSON.stringify(item.value)
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text
}

function keyRow(item) {
  const open = el('button', { type: 'button' }, item.key)
  open.addEventListener('click', () => void showValue(item.key))
  return el(
    'tr',
    { 'data-key': item.key },
    el('td', {}, open),
    el('td', {}, item.contentType),
    el('td', {}, item.siblings),
    el('td', { class: 'preview' }, preview(item)),
  )
}

const shown = (sibling) =>
  'valueBase64' in sibling
    ? `base64:\n${sibling.valueBase64}`
    : typeof sibling.value === 'string'
      ? sibling.value
      : JSON.stringify(sibling.value, null, 2)

/** The key's every sibling (one unless writes were concurrent), with who wrote it and when. */
async function showValue(key) {
  const asked = ++shownKey
  const box = $('value')
  box.replaceChildren(el('p', { class: 'note' }, `reading ${key}…`))
  let answer
  try {
    answer = await api(`/v1/kv/${encodeURIComponent(key)}?siblings=true`)
  } catch (error) {
    if (asked === shownKey) box.replaceChildren(el('p', { class: 'error' }, `${key}: ${error.message}`))
    return
  }
  if (asked !== shownKey) return
  box.dataset.key = key
  box.replaceChildren(
    el('h3', { class: 'mono' }, key),
    el('p', { class: 'note' }, `version ${answer.version} · ${answer.siblings.length} sibling(s)`),
    ...answer.siblings.map((sibling) =>
      el(
        'div',
        { class: 'sibling' },
        el('p', { class: 'note' }, `${sibling.deleted ? 'deleted' : sibling.contentType}, written by ${sibling.node}`),
        el('p', { class: 'note' }, `at ${new Date(sibling.hlc.wallMs).toISOString()}`),
        sibling.deleted ? null : el('pre', { class: 'shown' }, shown(sibling)),
      ),
    ),
  )
}

function setupBrowser() {
  $('list-form').addEventListener('submit', (event) => {
    event.preventDefault()
    pages.cursors = [null]
    pages.at = 0
    void listKeys()
  })
  $('next').addEventListener('click', () => {
    pages.at++
    void listKeys()
  })
  $('prev').addEventListener('click', () => {
    pages.at--
    void listKeys()
  })
}

setupToken()
setupBrowser()
void tick()
