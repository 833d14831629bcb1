#!/usr/bin/env node
// GNAP grants and tokens through @interledger/open-payments' authenticated client, unmodified:
// it signs every request (RFC 9421) and validates every response against the Open Payments
// OpenAPI files it ships (left on).
//
// Usage: open_payments_grants.js <client wallet address URL> <PKCS#8 PEM private key file> <key id>
// One JSON request per stdin line; runs until stdin closes. An "id" in a request is echoed.
//   {"op":"grant","url":"<auth server URL>","access":[{...access item...}]}
//     grant.request({url}, {access_token: {access}})
//   {"op":"rotate","url":"<manage URL>","accessToken":"<value>"}   token.rotate
//   {"op":"revoke","url":"<manage URL>","accessToken":"<value>"}   token.revoke
//   {"op":"cancel","url":"<continue URI>","accessToken":"<value>"} grant.cancel
// One JSON answer per line:
//   {"ok":true,"body":{...the response the client returned...}|null}
//   {"ok":false,"error":"<message>","description":"…","status":401|null,"code":"…"|null,
//    "validationErrors":[…]|null}
'use strict'

const readline = require('readline')
const { createAuthenticatedClient } = require('@interledger/open-payments')

async function answer(client, request) {
  if (typeof request.url !== 'string') throw new Error('url must be a string')
  let body
  switch (request.op) {
    case 'grant':
      body = await client.grant.request({ url: request.url }, { access_token: { access: request.access } })
      break
    case 'rotate':
      body = await client.token.rotate({ url: request.url, accessToken: request.accessToken })
      break
    case 'revoke':
      body = await client.token.revoke({ url: request.url, accessToken: request.accessToken })
      break
    case 'cancel':
      body = await client.grant.cancel({ url: request.url, accessToken: request.accessToken })
      break
    default:
      throw new Error(`unknown op: ${request.op}`)
  }
  return { ok: true, body: body === undefined ? null : body }
}

function failure(err) {
  return {
    ok: false,
    error: String(err && err.message ? err.message : err),
    description: err && err.description !== undefined ? err.description : null,
    status: err && err.status !== undefined ? err.status : null,
    code: err && err.code !== undefined ? err.code : null,
    validationErrors: err && err.validationErrors !== undefined ? err.validationErrors : null,
  }
}

async function main() {
  const [walletAddressUrl, privateKey, keyId] = process.argv.slice(2)
  const client = await createAuthenticatedClient({
    walletAddressUrl,
    privateKey,
    keyId,
    validateResponses: true,
    requestTimeoutMs: 10000,
  })
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
