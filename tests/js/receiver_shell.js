// The process shell shared by the two STREAM receiver CLIs (stream_receiver.js, stream_server.js):
// a loopback HTTP server speaking synchronous ILP-over-HTTP (RFC 35 draft 2, PROTOCOLS.md §4) on
// POST /ilp and SPSP (RFC 9, with the receipt-era Receipt-Nonce / Receipt-Secret headers of
// RFC 39) on GET /spsp, plus the line commands on stdin. The receivers plug in how a Prepare is
// answered and how SPSP credentials are made.
'use strict'

const http = require('http')
const readline = require('readline')

const MAX_BODY_BYTES = 64 * 1024

/** Writes one JSON line to stdout: the only thing the CLIs print there. */
function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    req.on('data', (chunk) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function sendJson(res, status, body, contentType = 'application/json') {
  const bytes = Buffer.from(JSON.stringify(body), 'utf8')
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': bytes.length,
    'Cache-Control': 'no-cache',
  })
  res.end(bytes)
}

/**
 * Receipt nonce and secret from SPSP request headers: both or neither (Rafiki answers 400
 * otherwise), base64, 16 and 32 bytes. Returns {receipt: {nonce, secret} | undefined} or
 * {error: message}.
 */
function receiptFromHeaders(headers) {
  const nonceB64 = headers['receipt-nonce']
  const secretB64 = headers['receipt-secret']
  if (nonceB64 === undefined && secretB64 === undefined) return { receipt: undefined }
  if (nonceB64 === undefined || secretB64 === undefined) {
    return { error: 'Receipt-Nonce and Receipt-Secret must be sent together' }
  }
  const nonce = Buffer.from(nonceB64, 'base64')
  const secret = Buffer.from(secretB64, 'base64')
  if (nonce.length !== 16) return { error: 'Receipt-Nonce must be 16 bytes' }
  if (secret.length !== 32) return { error: 'Receipt-Secret must be 32 bytes' }
  return { receipt: { nonce, secret } }
}

/**
 * Starts the HTTP server on host:port (port 0 = ephemeral).
 *   handlePrepare(prepareBytes: Buffer) => Promise<Buffer>  (Fulfill or Reject bytes)
 *   makeCredentials(receipt | undefined) => {destinationAccount, sharedSecret: Buffer, receiptsEnabled}
 *   token: if set, POST /ilp requires "Authorization: Bearer <token>" (else 401)
 *   stats: object whose counters this server increments
 */
async function startHttp({ host, port, token, handlePrepare, makeCredentials, stats }) {
  const server = http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname
    try {
      if (req.method === 'POST' && path === '/ilp') {
        stats.httpIlpRequests++
        if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
          res.writeHead(401).end()
          return
        }
        const contentType = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase()
        if (contentType !== 'application/octet-stream') {
          res.writeHead(400).end()
          return
        }
        const reply = await handlePrepare(await readBody(req))
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': reply.length })
        res.end(reply)
        return
      }
      if (req.method === 'GET' && (path === '/spsp' || path === '/.well-known/pay')) {
        stats.spspQueries++
        const { receipt, error } = receiptFromHeaders(req.headers)
        if (error) {
          sendJson(res, 400, { id: 'InvalidReceiptSetup', message: error })
          return
        }
        const credentials = makeCredentials(receipt)
        sendJson(
          res,
          200,
          {
            destination_account: credentials.destinationAccount,
            shared_secret: credentials.sharedSecret.toString('base64'),
            receipts_enabled: credentials.receiptsEnabled,
          },
          'application/spsp4+json',
        )
        return
      }
      res.writeHead(404).end()
    } catch (err) {
      process.stderr.write(`request failed: ${err && err.stack ? err.stack : err}\n`)
      if (!res.headersSent) res.writeHead(500)
      res.end()
    }
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  return server
}

/**
 * Answers stdin line commands until stdin closes, then exits the process:
 *   total  -> {"totalReceived": "<decimal string>"}
 *   stats  -> stats object (counters and per-connection totals)
 */
function serveCommands({ total, stats }) {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    const command = line.trim()
    if (command === '') return
    if (command === 'total') emit({ totalReceived: total().toString() })
    else if (command === 'stats') emit(stats())
    else if (command === 'quit') process.exit(0)
    else emit({ error: `unknown command: ${command}` })
  })
  rl.on('close', () => process.exit(0))
}

module.exports = { emit, startHttp, serveCommands }
