#!/usr/bin/env node
// STREAM sender (RFC 29) with ilp-protocol-stream's client (createConnection), paying over
// ILP-over-HTTP as a peer with a bearer token.
//
//   node stream_client.js --ilp-url URL --token TOKEN --spsp-url URL --amount N
//
// Does the SPSP GET itself (Accept: application/spsp4+json), opens a connection, sends N on one
// stream with sendTotal, closes, and prints one line
// {"ok": bool, "totalSent": "...", "totalDelivered": "...", "error": null|"..."}; exit 0 if ok.
'use strict'

const { parseArgs } = require('util')
const { createConnection } = require('ilp-protocol-stream')

/** The plugin interface ilp-protocol-stream expects, over synchronous ILP-over-HTTP. */
class HttpPlugin {
  constructor(url, token) {
    this.url = url
    this.token = token
    this.connected = false
  }

  async connect() {
    this.connected = true
  }

  async disconnect() {
    this.connected = false
  }

  isConnected() {
    return this.connected
  }

  registerDataHandler() {}

  deregisterDataHandler() {}

  async sendData(data) {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${this.token}`,
        'Content-Type': 'application/octet-stream',
        Accept: 'application/octet-stream',
      },
      body: data,
    })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    return Buffer.from(await response.arrayBuffer())
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      'ilp-url': { type: 'string' },
      token: { type: 'string' },
      'spsp-url': { type: 'string' },
      amount: { type: 'string' },
    },
  })
  const spsp = await fetch(values['spsp-url'], { headers: { Accept: 'application/spsp4+json' } })
  if (!spsp.ok) throw new Error(`SPSP query answered ${spsp.status}`)
  const { destination_account: destinationAccount, shared_secret: secret } = await spsp.json()
  const plugin = new HttpPlugin(values['ilp-url'], values.token)
  const connection = await createConnection({
    plugin,
    destinationAccount,
    sharedSecret: Buffer.from(secret, 'base64'),
    slippage: 0.01,
  })
  const stream = connection.createStream()
  await stream.sendTotal(values.amount, { timeout: 30000 })
  await connection.end()
  return { totalSent: connection.totalSent, totalDelivered: connection.totalDelivered }
}

main().then(
  (result) => {
    process.stdout.write(JSON.stringify({ ok: true, ...result, error: null }) + '\n')
    process.exit(0)
  },
  (error) => {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.message || error) }) + '\n')
    process.exit(1)
  },
)
