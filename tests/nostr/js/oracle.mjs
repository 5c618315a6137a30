// nostr-tools as an outside oracle: reads one JSON array of requests on stdin, writes one JSON
// array of results on stdout. Used by tests/nostr/test_interop_nostr_tools.py and
// benchmarks/bench_nostr.py. Every request is {op, ...}; see the switch below.
import { finalizeEvent, verifyEvent, getEventHash, serializeEvent, getPublicKey } from 'nostr-tools/pure'
import * as nip19 from 'nostr-tools/nip19'
import * as nip44 from 'nostr-tools/nip44'
import { hexToBytes, bytesToHex } from '@noble/hashes/utils.js'

function handle(req) {
  switch (req.op) {
    case 'verify':
      // a fresh copy: nostr-tools caches the verdict on the object it was given
      return verifyEvent(structuredClone(req.event))
    case 'hash':
      return { id: getEventHash(req.event), serialized: serializeEvent(req.event) }
    case 'sign':
      return finalizeEvent(req.template, hexToBytes(req.sk))
    case 'pubkey':
      return getPublicKey(hexToBytes(req.sk))
    case 'npub':
      return nip19.npubEncode(req.hex)
    case 'nsec':
      return nip19.nsecEncode(hexToBytes(req.hex))
    case 'nprofile':
      return nip19.nprofileEncode({ pubkey: req.pubkey, relays: req.relays })
    case 'decode': {
      try {
        const { type, data } = nip19.decode(req.bech32)
        return { type, data: data instanceof Uint8Array ? bytesToHex(data) : data }
      } catch (e) {
        return { error: String(e.message || e) }
      }
    }
    case 'conversation_key':
      return bytesToHex(nip44.getConversationKey(hexToBytes(req.sk), req.pk))
    case 'nip44_encrypt':
      return nip44.encrypt(req.plaintext, hexToBytes(req.ck), req.nonce ? hexToBytes(req.nonce) : undefined)
    case 'nip44_decrypt':
      try {
        return { plaintext: nip44.decrypt(req.payload, hexToBytes(req.ck)) }
      } catch (e) {
        return { error: String(e.message || e) }
      }
    case 'bench_verify': {
      // verify req.events round-robin for req.n verifications; report verifications per second
      const events = req.events
      let ok = 0
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < req.n; i++) if (verifyEvent(structuredClone(events[i % events.length]))) ok++
      const dt = Number(process.hrtime.bigint() - t0) / 1e9
      return { per_s: req.n / dt, ok }
    }
    case 'bench_sign': {
      const sk = hexToBytes(req.sk)
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < req.n; i++) finalizeEvent({ kind: 1, created_at: 1700000000 + i, tags: [], content: 'bench ' + i }, sk)
      const dt = Number(process.hrtime.bigint() - t0) / 1e9
      return { per_s: req.n / dt }
    }
    default:
      throw new Error('unknown op ' + req.op)
  }
}

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const requests = JSON.parse(Buffer.concat(chunks).toString('utf8'))
process.stdout.write(JSON.stringify(requests.map(handle)))
