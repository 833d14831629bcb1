#!/usr/bin/env node
// RFC 9421 request signatures as Open Payments makes and checks them, over
// @interledger/http-signature-utils (createHeaders, the client's signer; validateSignatureHeaders
// and validateSignature, Rafiki's auth server's checks).
//
// One JSON request per stdin line:
//   {"op": "sign", "method": "POST", "url": "https://…", "headers": {"Authorization": "GNAP t"},
//    "body": "<JSON text>" | null, "private_key_pem": "-----BEGIN PRIVATE KEY-----…", "key_id": "k1"}
//     -> {"ok": true, "headers": {"Signature-Input": …, "Signature": …, "Content-Digest"?: …, …}}
//   {"op": "verify", "method": …, "url": …, "headers": {<lowercase names>: …}, "body": … | null,
//    "jwk": {"kid", "kty", "crv", "x", "alg"}}
//     -> {"ok": true, "headers_valid": bool, "signature_valid": bool}
//   {"op": "jwk", "private_key_pem": …, "key_id": …} -> {"ok": true, "jwk": {…}} (generateJwk)
// Failures answer {"ok": false, "error": "<message>"}. An "id" field is echoed in its answer.
'use strict'

const crypto = require('crypto')
const readline = require('readline')
const {
  createHeaders,
  generateJwk,
  validateSignature,
  validateSignatureHeaders,
} = require('@interledger/http-signature-utils')

function requestLike(request) {
  const out = { method: request.method, url: request.url, headers: request.headers || {} }
  if (typeof request.body === 'string') out.body = request.body
  return out
}

async function answer(request) {
  switch (request.op) {
    case 'sign': {
      const privateKey = crypto.createPrivateKey(request.private_key_pem)
      const headers = await createHeaders({
        request: requestLike(request),
        privateKey,
        keyId: request.key_id,
      })
      return { ok: true, headers }
    }
    case 'verify': {
      const like = requestLike(request)
      const headersValid = validateSignatureHeaders(like)
      let signatureValid = false
      try {
        signatureValid = await validateSignature(request.jwk, like)
      } catch (_) {
        // A malformed signature throws; for a verifier that is simply "not valid".
      }
      return { ok: true, headers_valid: headersValid, signature_valid: signatureValid }
    }
    case 'jwk': {
      const privateKey = crypto.createPrivateKey(request.private_key_pem)
      return { ok: true, jwk: generateJwk({ privateKey, keyId: request.key_id }) }
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}`)
  }
}

function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // Answers are written in request order: each waits for the one before it.
  let previous = Promise.resolve()
  rl.on('line', (line) => {
    if (line.trim() === '') return
    let id
    const work = (async () => {
      try {
        const request = JSON.parse(line)
        id = request && typeof request === 'object' ? request.id : undefined
        return await answer(request)
      } catch (err) {
        return { ok: false, error: String(err && err.message ? err.message : err) }
      }
    })()
    previous = previous.then(async () => {
      const out = await work
      process.stdout.write(JSON.stringify(id !== undefined ? { id, ...out } : out) + '\n')
    })
  })
}

main()
