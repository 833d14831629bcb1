#!/usr/bin/env node
// GNAP grants and tokens, and incoming payments, through @interledger/open-payments' authenticated client, unmodified:
// it signs every request (RFC 9421) and validates every response against the Open Payments
// OpenAPI files it ships (left on).
//
// Usage: open_payments_grants.js <client wallet address URL> <PKCS#8 PEM private key file> <key id>
// One JSON request per stdin line; runs until stdin closes. An "id" in a request is echoed.
//   {"op":"getWalletAddress","url":"<wallet address URL>"}     walletAddress.get (its
//     authServer and resourceServer: where an app asks for grants and makes resources)
//   {"op":"grant","url":"<auth server URL>","access":[{...access item...}],"interact":{...}?}
//     grant.request({url}, {access_token: {access}, interact?})
//   {"op":"continue","url":"<continue URI>","accessToken":"<value>","interactRef":"…"}
//     grant.continue({url, accessToken}, {interact_ref})
//   {"op":"rotate","url":"<manage URL>","accessToken":"<value>"}   token.rotate
//   {"op":"revoke","url":"<manage URL>","accessToken":"<value>"}   token.revoke
//   {"op":"cancel","url":"<continue URI>","accessToken":"<value>"} grant.cancel
// Incoming payments on a resource server (same client, same signing):
//   {"op":"createIncoming","url":"<resource server>","accessToken":"…","body":{walletAddress,…}}
//                                                                  incomingPayment.create
//   {"op":"getIncoming","url":"<incoming payment id>","accessToken":"…"} incomingPayment.get
//   {"op":"listIncoming","url":"<resource server>","accessToken":"…","walletAddress":"…",
//    "pagination":{first|last,cursor}?}                              incomingPayment.list
//   {"op":"completeIncoming","url":"<incoming payment id>","accessToken":"…"}
//                                                                  incomingPayment.complete
//   {"op":"getPublicIncoming","url":"<incoming payment id>"}  an unauthenticated client's get
// Quotes and outgoing payments (same client, same signing):
//   {"op":"createQuote","url":"<resource server>","accessToken":"…","body":{walletAddress,…}}
//   {"op":"getQuote","url":"<quote id>","accessToken":"…"}
//   {"op":"createOutgoing","url":"<resource server>","accessToken":"…","body":{…}}
//   {"op":"getOutgoing","url":"<outgoing payment id>","accessToken":"…"}
//   {"op":"listOutgoing","url":"<resource server>","accessToken":"…","walletAddress":"…",
//    "pagination":{…}?}
//   {"op":"grantSpent","url":"<resource server>","accessToken":"…"}
//                                                  outgoingPayment.getGrantSpentAmounts
// One JSON answer per line:
//   {"ok":true,"body":{...the response the client returned...}|null}
//   {"ok":false,"error":"<message>","description":"…","status":401|null,"code":"…"|null,
//    "validationErrors":[…]|null}
'use strict'

const readline = require('readline')
const { createAuthenticatedClient, createUnauthenticatedClient } = require('@interledger/open-payments')

async function answer(client, anonymous, request) {
  if (typeof request.url !== 'string') throw new Error('url must be a string')
  let body
  switch (request.op) {
    case 'getWalletAddress':
      body = await client.walletAddress.get({ url: request.url })
      break
    case 'grant':
      body = await client.grant.request(
        { url: request.url },
        request.interact === undefined
          ? { access_token: { access: request.access } }
          : { access_token: { access: request.access }, interact: request.interact }
      )
      break
    case 'continue':
      body = await client.grant.continue(
        { url: request.url, accessToken: request.accessToken },
        { interact_ref: request.interactRef }
      )
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
    case 'createIncoming':
      body = await client.incomingPayment.create(
        { url: request.url, accessToken: request.accessToken },
        request.body
      )
      break
    case 'getIncoming':
      body = await client.incomingPayment.get({ url: request.url, accessToken: request.accessToken })
      break
    case 'listIncoming':
      body = await client.incomingPayment.list(
        { url: request.url, accessToken: request.accessToken, walletAddress: request.walletAddress },
        request.pagination
      )
      break
    case 'completeIncoming':
      body = await client.incomingPayment.complete({ url: request.url, accessToken: request.accessToken })
      break
    case 'createQuote':
      body = await client.quote.create({ url: request.url, accessToken: request.accessToken }, request.body)
      break
    case 'getQuote':
      body = await client.quote.get({ url: request.url, accessToken: request.accessToken })
      break
    case 'createOutgoing':
      body = await client.outgoingPayment.create(
        { url: request.url, accessToken: request.accessToken },
        request.body
      )
      break
    case 'getOutgoing':
      body = await client.outgoingPayment.get({ url: request.url, accessToken: request.accessToken })
      break
    case 'listOutgoing':
      body = await client.outgoingPayment.list(
        { url: request.url, accessToken: request.accessToken, walletAddress: request.walletAddress },
        request.pagination
      )
      break
    case 'grantSpent':
      body = await client.outgoingPayment.getGrantSpentAmounts({
        url: request.url,
        accessToken: request.accessToken,
      })
      break
    case 'getPublicIncoming':
      body = await anonymous.incomingPayment.get({ url: request.url })
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
  const anonymous = await createUnauthenticatedClient({ validateResponses: true, requestTimeoutMs: 10000 })
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // One request at a time, in order: each answer is written before the next request is read.
  for await (const line of rl) {
    if (line.trim() === '') continue
    let out
    let id
    try {
      const request = JSON.parse(line)
      id = request && typeof request === 'object' ? request.id : undefined
      out = await answer(client, anonymous, request)
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
