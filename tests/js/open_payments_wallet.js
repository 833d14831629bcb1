#!/usr/bin/env node
// Reads wallet addresses with @interledger/open-payments' unauthenticated client, unmodified:
// it validates every response against the Open Payments OpenAPI files it ships (left on).
//
// One JSON request per stdin line; runs until stdin closes. An "id" in a request is echoed.
//   {"op":"get","url":"<wallet address URL>"}      walletAddress.get({url})
//   {"op":"getKeys","url":"<wallet address URL>"}  walletAddress.getKeys({url})
// One JSON answer per line:
//   {"ok":true,"body":{...the response the client returned...}}
//   {"ok":false,"error":"<message>","description":"…","status":404|null,"validationErrors":[…]|null}
'use strict'

const readline = require('readline')
const { createUnauthenticatedClient } = require('@interledger/open-payments')

async function answer(client, request) {
  if (typeof request.url !== 'string') throw new Error('url must be a string')
  let body
  if (request.op === 'get') {
    body = await client.walletAddress.get({ url: request.url })
  } else if (request.op === 'getKeys') {
    body = await client.walletAddress.getKeys({ url: request.url })
  } else {
    throw new Error(`unknown op: ${request.op}`)
  }
  return { ok: true, body }
}

function failure(err) {
  return {
    ok: false,
    error: String(err && err.message ? err.message : err),
    description: err && err.description !== undefined ? err.description : null,
    status: err && err.status !== undefined ? err.status : null,
    validationErrors: err && err.validationErrors !== undefined ? err.validationErrors : null,
  }
}

async function main() {
  const client = await createUnauthenticatedClient({ validateResponses: true, requestTimeoutMs: 10000 })
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // One request at a time, in order: each answer is written before the next request is read.
  for await (const line of rl) {
    if (line.trim() === '') continue
    let out
    let id
    try {
      const request = JSON.parse(line)
      id = request && typeof request === 'object' ? request.id : undefined
      out = await answer(client, request)
    } catch (err) {
      out = failure(err)
    }
    if (id !== undefined) out.id = id
    process.stdout.write(JSON.stringify(out) + '\n')
  }
}

main().catch((err) => {
  process.stdout.write(JSON.stringify(failure(err)) + '\n')
  process.exit(1)
})
