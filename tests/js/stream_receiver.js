#!/usr/bin/env node
// STREAM receiver (RFC 29) over @interledger/stream-receiver, the stateless receiver Rafiki uses,
// behind loopback ILP-over-HTTP and SPSP endpoints (see receiver_shell.js and README.md).
// Accepts all money; keeps a running total per connection and passes it to setTotalReceived so
// STREAM receipts (RFC 39) carry cumulative totals.
//
//   node stream_receiver.js --address test.js.receiver --asset-code USD --asset-scale 9
//       [--secret HEX32] [--token TOKEN] [--host 127.0.0.1] [--port 0]
// Prints {"port": P, "address": "...", "assetCode": "...", "assetScale": N} when ready.
'use strict'

const crypto = require('crypto')
const { parseArgs } = require('util')
const { StreamServer } = require('@interledger/stream-receiver')
const IlpPacket = require('ilp-packet')
const { emit, startHttp, serveCommands } = require('./receiver_shell')

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
  const asset = { code: values['asset-code'], scale: Number(values['asset-scale']) }
  const serverSecret = values.secret ? Buffer.from(values.secret, 'hex') : crypto.randomBytes(32)
  const receiver = new StreamServer({ serverSecret, serverAddress: values.address })

  let totalReceived = 0n
  const totalsByConnection = new Map()
  const counters = { httpIlpRequests: 0, spspQueries: 0, fulfilled: 0, rejected: 0, rejectCodes: {} }

  const handlePrepare = async (bytes) => {
    let prepare
    try {
      prepare = IlpPacket.deserializeIlpPrepare(bytes)
    } catch (err) {
      return countReply(
        IlpPacket.serializeIlpReject({
          code: 'F01',
          triggeredBy: values.address,
          message: 'invalid packet',
          data: Buffer.alloc(0),
        }),
      )
    }
    const moneyOrReply = receiver.createReply(prepare)
    if (IlpPacket.isIlpReply(moneyOrReply)) {
      return countReply(IlpPacket.serializeIlpReply(moneyOrReply))
    }
    const amount = BigInt(prepare.amount)
    const connectionTotal = (totalsByConnection.get(moneyOrReply.connectionId) || 0n) + amount
    moneyOrReply.setTotalReceived(connectionTotal.toString())
    const fulfill = moneyOrReply.accept()
    totalsByConnection.set(moneyOrReply.connectionId, connectionTotal)
    totalReceived += amount
    return countReply(IlpPacket.serializeIlpFulfill(fulfill))
  }

  const countReply = (replyBytes) => {
    if (replyBytes[0] === IlpPacket.Type.TYPE_ILP_FULFILL) {
      counters.fulfilled++
    } else {
      counters.rejected++
      const code = IlpPacket.deserializeIlpReject(replyBytes).code
      counters.rejectCodes[code] = (counters.rejectCodes[code] || 0) + 1
    }
    return replyBytes
  }

  const makeCredentials = (receipt) => {
    const credentials = receiver.generateCredentials({
      asset,
      ...(receipt && { receiptSetup: { nonce: receipt.nonce, secret: receipt.secret } }),
    })
    return {
      destinationAccount: credentials.ilpAddress,
      sharedSecret: credentials.sharedSecret,
      receiptsEnabled: receipt !== undefined,
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
    assetCode: asset.code,
    assetScale: asset.scale,
  })
}

main().catch((err) => {
  emit({ error: String(err && err.message ? err.message : err) })
  process.exit(1)
})
