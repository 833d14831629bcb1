#!/usr/bin/env node
// STREAM receipt (deprecated RFC 39, PROTOCOLS.md §8) verifier over ilp-protocol-stream's
// decodeReceipt / verifyReceipt, to check receipts made by Kiungo and to decode JS-made ones.
//
// One JSON request per stdin line: {"receipt_b64": "...", "secret_b64": "..."}
// One JSON answer per line:
//   {"ok": true,  "version": 1, "nonce_hex": "...", "streamId": 1, "totalReceived": "123", "error": null}
//   {"ok": false, ...decoded fields when the 58 bytes decode..., "error": "invalid hmac"}
// An "id" field in a request is echoed in its answer.
'use strict'

const readline = require('readline')
const { decodeReceipt, verifyReceipt } = require('ilp-protocol-stream')

function decodedFields(receipt) {
  return {
    version: receipt.version,
    nonce_hex: receipt.nonce.toString('hex'),
    streamId: Number(receipt.streamId),
    totalReceived: receipt.totalReceived.toString(),
  }
}

function answer(request) {
  if (typeof request.receipt_b64 !== 'string') throw new Error('receipt_b64 must be a string')
  if (typeof request.secret_b64 !== 'string') throw new Error('secret_b64 must be a string')
  const receipt = Buffer.from(request.receipt_b64, 'base64')
  const secret = Buffer.from(request.secret_b64, 'base64')
  let decoded = {}
  try {
    decoded = decodedFields(decodeReceipt(receipt))
  } catch (_) {
    // Reported by verifyReceipt below ("receipt malformed").
  }
  try {
    return { ok: true, ...decodedFields(verifyReceipt(receipt, secret)), error: null }
  } catch (err) {
    return { ok: false, ...decoded, error: String(err && err.message ? err.message : err) }
  }
}

function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    if (line.trim() === '') return
    let out
    let id
    try {
      const request = JSON.parse(line)
      id = request && typeof request === 'object' ? request.id : undefined
      out = answer(request)
    } catch (err) {
      out = { ok: false, error: String(err && err.message ? err.message : err) }
    }
    process.stdout.write(JSON.stringify(id !== undefined ? { id, ...out } : out) + '\n')
  })
}

main()
