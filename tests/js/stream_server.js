#!/usr/bin/env node
// STREAM receiver (RFC 29) over ilp-protocol-stream's full Server (createServer /
// generateAddressAndSecret), behind loopback ILP-over-HTTP and SPSP endpoints (see
// receiver_shell.js and README.md). Accepts all money on every connection and stream; receipts
// (RFC 39) are produced by ilp-protocol-stream itself when SPSP receipt headers were sent.
//
//   node stream_server.js --address test.js.server --asset-code USD --asset-scale 9
//       [--secret HEX32] [--token TOKEN] [--host 127.0.0.1] [--port 0]
// Prints {"port": P, "address": "...", "assetCode": "...", "assetScale": N} when ready.
'use strict'

const crypto = require('crypto')
const { parseArgs } = require('util')
const { createServer } = require('ilp-protocol-stream')
const ILDCP = require('ilp-protocol-ildcp')
const IlpPacket = require('ilp-packet')
const { emit, startHttp, serveCommands } = require('./receiver_shell')

/**
 * In-process plugin (the ILP "ledger plugin" interface ilp-protocol-stream expects): Prepares
 * arriving over HTTP go to the registered data handler; outgoing packets from the server are
 * answered locally: IL-DCP (peer.config) with the configured address and asset, everything else
 * F02 because nothing is routed out of this process.
 */
class LoopbackPlugin {
  constructor({ address, assetCode, assetScale }) {
    this.ildcp = { clientAddress: address, assetCode, assetScale }
    this.connected = false
    this.dataHandler = undefined
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

  registerDataHandler(handler) {
    this.dataHandler = handler
  }

  deregisterDataHandler() {
    this.dataHandler = undefined
  }

  async sendData(data) {
    const reject = (code, message) =>
      IlpPacket.serializeIlpReject({
        code,
        triggeredBy: this.ildcp.clientAddress,
        message,
        data: Buffer.alloc(0),
      })
    let prepare
    try {
      prepare = IlpPacket.deserializeIlpPrepare(data)
    } catch (_) {
      return reject('F01', 'invalid packet')
    }
    if (prepare.destination === 'peer.config') {
      return ILDCP.serve({
        requestPacket: data,
        handler: async () => this.ildcp,
        serverAddress: this.ildcp.clientAddress,
      })
    }
    return reject('F02', 'no route out of the test receiver')
  }

  /** Delivers an incoming Prepare (bytes) to the server; resolves with the reply bytes. */
  async receive(data) {
    if (!this.dataHandler) {
      return IlpPacket.serializeIlpReject({
        code: 'T01',
        triggeredBy: this.ildcp.clientAddress,
        message: 'receiver not listening',
        data: Buffer.alloc(0),
      })
    }
    return this.dataHandler(data)
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      address: { type: 'string' },
      'asset-code': { type: 'string' },
      'asset-scale': { type: 'string' },
      secret: { type: 'string' },
      token: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
    },
  })
  if (!values.address || !values['asset-code'] || values['asset-scale'] === undefined) {
    throw new Error('--address, --asset-code and --asset-scale are required')
  }
  const plugin = new LoopbackPlugin({
    address: values.address,
    assetCode: values['asset-code'],
    assetScale: Number(values['asset-scale']),
  })
  const serverSecret = values.secret ? Buffer.from(values.secret, 'hex') : crypto.randomBytes(32)
  const streamServer = await createServer({ plugin, serverSecret })

  let totalReceived = 0n
  const totalsByConnection = new Map()
  const counters = { httpIlpRequests: 0, spspQueries: 0, fulfilled: 0, rejected: 0, rejectCodes: {} }
  streamServer.on('connection', (connection) => {
    // connectionId is protected in the typings but set on every Connection.
    const id = String(connection.connectionId)
    totalsByConnection.set(id, 0n)
    connection.on('error', (err) => process.stderr.write(`connection ${id} error: ${err}\n`))
    connection.on('stream', (stream) => {
      stream.on('error', (err) => process.stderr.write(`stream ${id}/${stream.id} error: ${err}\n`))
      stream.setReceiveMax(Infinity)
      stream.on('money', (amount) => {
        totalReceived += BigInt(amount)
        totalsByConnection.set(id, totalsByConnection.get(id) + BigInt(amount))
      })
    })
  })

  const handlePrepare = async (bytes) => {
    const reply = await plugin.receive(bytes)
    if (reply[0] === IlpPacket.Type.TYPE_ILP_FULFILL) {
      counters.fulfilled++
    } else {
      counters.rejected++
      const code = IlpPacket.deserializeIlpReject(reply).code
      counters.rejectCodes[code] = (counters.rejectCodes[code] || 0) + 1
    }
    return reply
  }

  const makeCredentials = (receipt) => {
    const credentials = streamServer.generateAddressAndSecret(
      receipt ? { receiptNonce: receipt.nonce, receiptSecret: receipt.secret } : undefined,
    )
    return {
      destinationAccount: credentials.destinationAccount,
      sharedSecret: credentials.sharedSecret,
      receiptsEnabled: credentials.receiptsEnabled,
    }
  }

  const server = await startHttp({
    host: values.host,
    port: Number(values.port),
    token: values.token,
    handlePrepare,
    makeCredentials,
    stats: counters,
  })
  serveCommands({
    total: () => totalReceived,
    stats: () => ({
      ...counters,
      totalReceived: totalReceived.toString(),
      connections: Object.fromEntries([...totalsByConnection].map(([id, t]) => [id, t.toString()])),
    }),
  })
  emit({
    port: server.address().port,
    address: values.address,
    assetCode: streamServer.assetCode,
    assetScale: streamServer.assetScale,
  })
}

main().catch((err) => {
  emit({ error: String(err && err.message ? err.message : err) })
  process.exit(1)
})
