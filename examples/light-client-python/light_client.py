#!/usr/bin/env python3
"""A NeuroShard light client in Python: verifies a certificate with the
committee's group public key alone.

    python3 light_client.py committee.json certificate.json

On success prints the decoded certificate payload as JSON and exits 0. On
refusal prints `refused: <outcome>: <reason>` to stderr and exits 1, where
<outcome> is one of the names the test vectors use (bad-signature,
wrong-committee, wrong-chain, wrong-scheme, wrong-payload-type, bad-payload,
payload-too-large).

It performs the checks of the Rust `Verifier`, in the same order: payload
size, payload type, scheme, committee epoch, payload decoding (protobuf,
decoded by hand below: no generated code needed), committee hash named by the
payload, chain id, and the BLS signature over DSSE's pre-authentication
encoding, verified with py_ecc's IETF "basic" ciphersuite
(BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_).
"""

import base64
import hashlib
import json
import sys

from py_ecc.bls import G2Basic

PAYLOAD_TYPE = "application/vnd.neuroshard.certificate.v1+protobuf"
SCHEME = "bls-threshold-g2-rfc9380"
MAX_PAYLOAD_BYTES = 256 * 1024
COMMITTEE_FIELDS = (
    "chain_id", "epoch", "genesis_time_ms", "group_public_key",
    "n", "scheme", "t", "validator_set_hash",
)


class Refused(Exception):
    def __init__(self, outcome, reason):
        super().__init__(f"{outcome}: {reason}")
        self.outcome = outcome


def committee_hash(info):
    """SHA-256 of the canonical JSON: the eight fields, sorted keys, no spaces."""
    canonical = {k: info[k] for k in COMMITTEE_FIELDS}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).digest()


def pae(payload_type, payload):
    """DSSE pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d " % (len(t), t, len(payload)) + payload


# --- protobuf, by hand -------------------------------------------------------

class DecodeError(Exception):
    pass


def read_varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos


def fields(buf):
    """Yields (number, wire_type, value): ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise DecodeError("truncated fixed-width field")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            if pos + size > len(buf):
                raise DecodeError(f"field {number} claims {size} bytes, {len(buf) - pos} left")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        yield number, wire, value


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"invalid UTF-8: {e}")


# field number -> (name, kind); kinds: u64 u32 i64 bool enum str bytes msg:<schema> rep:<kind>
PARAMETER_VALUE = {1: ("integer", "i64"), 2: ("fixed_micro", "i64"), 3: ("boolean", "bool"), 4: ("text", "str")}
PARAMETER_CHANGE = {1: ("key", "str"), 2: ("old_value", "msg:value"), 3: ("new_value", "msg:value")}
ECONOMIC_IMPACT = {
    1: ("training_efficiency_multiplier_micro", "i64"),
    2: ("training_reward_multiplier_micro", "i64"),
    3: ("net_earnings_change_percent_micro", "i64"),
    4: ("summary", "str"),
}
UPGRADE_PATH = {1: ("grace_period_days", "u32"), 2: ("backward_compatible", "bool")}
TALLY = {
    1: ("yes", "u64"), 2: ("no", "u64"), 3: ("abstain", "u64"), 4: ("total_power", "u64"),
    5: ("quorum_bps", "u32"), 6: ("approval_bps", "u32"), 7: ("ballots", "u64"),
}
VERSION = {1: ("major", "u32"), 2: ("minor", "u32")}
KINDS = {0: "CERTIFICATE_KIND_UNSPECIFIED", 1: "ACTIVATION", 2: "CANCELLATION", 3: "REVOCATION"}
NEP_TYPES = {0: "NEP_TYPE_UNSPECIFIED", 1: "ARCH", 2: "ECON", 3: "TRAIN", 4: "NET", 5: "GOV", 6: "EMERG"}
PAYLOAD = {
    1: ("chain_id", "str"), 2: ("sequence", "u64"), 3: ("previous_payload_hash", "bytes"),
    4: ("kind", "enum:kind"), 5: ("nep_id", "u64"), 6: ("nep_type", "enum:nep_type"),
    7: ("content_hash", "bytes"), 8: ("title", "str"), 9: ("parameter_changes", "rep:msg:change"),
    10: ("economic_impact", "msg:impact"), 11: ("upgrade_path", "msg:upgrade"), 12: ("tally", "msg:tally"),
    13: ("decision_time_ms", "u64"), 14: ("decision_log_index", "u64"),
    15: ("activation_time_ms", "u64"), 16: ("activation_height", "u64"),
    17: ("version_before", "msg:version"), 18: ("version_after", "msg:version"),
    19: ("parameters_hash", "bytes"), 20: ("committee_hash", "bytes"), 21: ("ballots_root", "bytes"),
    22: ("emergency_approvals", "rep:u32"),
}
SCHEMAS = {
    "value": PARAMETER_VALUE, "change": PARAMETER_CHANGE, "impact": ECONOMIC_IMPACT,
    "upgrade": UPGRADE_PATH, "tally": TALLY, "version": VERSION,
}
ENUMS = {"kind": KINDS, "nep_type": NEP_TYPES}


def scalar(kind, wire, value):
    if kind in ("u64", "u32", "i64", "bool") or kind.startswith("enum:"):
        if wire != 0:
            raise DecodeError(f"wire type {wire} for a varint field")
        if kind == "u32":
            return value & 0xFFFFFFFF
        if kind == "i64":
            return signed64(value)
        if kind == "bool":
            return value != 0
        if kind.startswith("enum:"):
            v = signed64(value) if value >= 1 << 63 else value & 0xFFFFFFFF
            return ENUMS[kind[5:]].get(v, v)
        return value
    if wire != 2:
        raise DecodeError(f"wire type {wire} for a length-delimited field")
    if kind == "str":
        return text(value)
    if kind == "bytes":
        return value.hex()
    if kind.startswith("msg:"):
        return decode(value, SCHEMAS[kind[4:]])
    raise DecodeError(f"unknown kind {kind}")


def decode(buf, schema):
    out = {}
    for number, wire, value in fields(buf):
        if number not in schema:
            continue  # proto3: unknown fields are skipped
        name, kind = schema[number]
        if kind.startswith("rep:"):
            inner = kind[4:]
            items = out.setdefault(name, [])
            if inner == "u32" and wire == 2:  # packed
                pos = 0
                while pos < len(value):
                    v, pos = read_varint(value, pos)
                    items.append(v & 0xFFFFFFFF)
            else:
                items.append(scalar(inner, wire, value))
        else:
            out[name] = scalar(kind, wire, value)
    return out


# --- verification --------------------------------------------------------------

def verify(committee, envelope):
    """Returns the decoded payload or raises Refused."""
    payload = base64.b64decode(envelope["payload"], validate=True)
    signature = base64.b64decode(envelope["signature"], validate=True)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Refused("payload-too-large", f"{len(payload)} bytes")
    if envelope["payload_type"] != PAYLOAD_TYPE:
        raise Refused("wrong-payload-type", envelope["payload_type"])
    if committee["scheme"] != SCHEME:
        raise Refused("wrong-scheme", f"this client knows only {SCHEME}, committee uses {committee['scheme']}")
    if envelope["scheme"] != committee["scheme"]:
        raise Refused("wrong-scheme", f"certificate {envelope['scheme']}, committee {committee['scheme']}")
    if envelope["committee_epoch"] != committee["epoch"]:
        raise Refused("wrong-committee", f"epoch {envelope['committee_epoch']}, pinned {committee['epoch']}")
    try:
        decoded = decode(payload, PAYLOAD)
    except DecodeError as e:
        raise Refused("bad-payload", str(e))
    pinned = committee_hash(committee).hex()
    if decoded.get("committee_hash", "") != pinned:
        raise Refused("wrong-committee", f"payload names {decoded.get('committee_hash', '')}, pinned {pinned}")
    if decoded.get("chain_id", "") != committee["chain_id"]:
        raise Refused("wrong-chain", f"payload chain {decoded.get('chain_id', '')!r}, pinned {committee['chain_id']!r}")
    group_key = bytes.fromhex(committee["group_public_key"])
    if not G2Basic.Verify(group_key, pae(envelope["payload_type"], payload), signature):
        raise Refused("bad-signature", "G2Basic.Verify failed under the group public key")
    return decoded


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        committee = json.load(f)
    with open(argv[2], "rb") as f:
        envelope = json.load(f)
    try:
        payload = verify(committee, envelope)
    except Refused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
